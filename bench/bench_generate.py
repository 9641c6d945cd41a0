"""Benchmark: `diffuseq generate` throughput (lines/s, candidates/s) and the gain of length-aware batching.

    python bench/bench_generate.py --model runs/qqp/latest --steps 20 -n 10 --mbr --batch-size 64 --lines 200
    python bench/bench_generate.py --preset small --steps 100 --lines 50         # random weights, built once
    python bench/bench_generate.py --preset tiny --compare-length --lines 200    # --length auto vs full
    python bench/bench_generate.py --sweep                                       # the table in docs/benchmarks.md
    python bench/bench_generate.py --preset small --length-fit                   # what --length auto cuts off

It runs the library path the command runs (``generate_stream``: bucketing by length, per-candidate
noise, decoding, MBR), with sources taken from QQP valid, and times from the first line in to
the last result out; loading the model and one small warm-up batch are not timed. ``--preset``
builds a model folder with random weights (tests/helpers_models.py: BPE 8k trained on QQP valid,
its length statistics, seq_len 128, T = 2000) under --work; speed does not depend on the weights.
``--compare-length`` runs the same lines with ``--length auto`` (target region sized from the
model's length statistics, batches by total length) and ``--length full`` (every line padded to
the model's 128 positions, as the official code does) and reports the speed-up.

``--length-fit`` measures what ``--length auto`` may cost in quality without a trained model:
with length statistics taken from QQP train (as ``diffuseq train`` records them) and the model's
tokenizer, how many QQP valid references fit in the target region their source gets, and the
BLEU of the references cut to that region against the uncut ones (an upper bound for any model).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from diffuseq_cli.generation import GenerateOptions, generate_stream  # noqa: E402
from diffuseq_cli.generation import SamplingConfig, prepare  # noqa: E402
from diffuseq_cli.modelfiles.folder import load_model_folder  # noqa: E402
from diffuseq_cli.training.data import read_pairs  # noqa: E402
from paths import QQP_VALID  # noqa: E402

QQP_TRAIN = QQP_VALID.parent / "train.jsonl"


def preset_model(name: str, work: Path) -> Path:
    from helpers_models import build_tiny_model

    return build_tiny_model(work / f"{name}-v8k-s128-T2000", preset_name=name, vocab_size=8000, seq_len=128, steps=2000)


def measure(loaded, sources: list[str], opts: GenerateOptions) -> dict:
    """Run ``sources`` through generate_stream; seconds from first line in to last result out."""
    warm = replace(opts, sampling=replace(opts.sampling, steps=1))
    for _ in generate_stream(loaded, iter(sources[:2]), warm):
        pass
    start = time.perf_counter()
    lines = candidates = 0
    for result in generate_stream(loaded, iter(sources), opts):
        lines += 1
        candidates += len(result.candidates)
    seconds = time.perf_counter() - start
    jobs = prepare(loaded, sources, 0, opts.sampling)
    return {
        "lines": lines, "candidates": candidates, "seconds": seconds,
        "lines_per_s": lines / seconds, "candidates_per_s": candidates / seconds,
        "mean_positions": sum(j.length for j in jobs) / len(jobs),
    }


def options(args, steps: int, length: str) -> GenerateOptions:
    return GenerateOptions(
        num_samples=args.n, mbr=args.mbr,
        sampling=SamplingConfig(steps=steps, sampler=args.sampler, seed=0, length=length, batch_size=args.batch_size),
    )


def row(label: str, loaded, steps: int, args, r: dict) -> str:
    params = loaded.model.num_parameters() / 1e6
    return (f"| {label} | {params:.1f}M "
            f"| {steps} | {args.n}{' + MBR' if args.mbr else ''} | {args.batch_size} | {r['lines']} | {r['mean_positions']:.0f} "
            f"| {r['seconds']:.1f} | {r['lines_per_s']:.2f} | {r['candidates_per_s']:.2f} |")


HEADER = ("| model | params | steps | -n | batch | lines | mean positions | seconds | lines/s | candidates/s |\n"
          "|---|---|---|---|---|---|---|---|---|---|")


def run_one(args, model_path: Path, label: str, sources: list[str]) -> None:
    loaded = load_model_folder(model_path)
    if args.compare_length:
        auto = measure(loaded, sources, options(args, args.steps, "auto"))
        full = measure(loaded, sources, options(args, args.steps, "full"))
        print(HEADER)
        print(row(f"{label} --length auto", loaded, args.steps, args, auto))
        print(row(f"{label} --length full", loaded, args.steps, args, full))
        print(f"\nlength-aware speed-up: {auto['lines_per_s'] / full['lines_per_s']:.2f}x "
              f"(mean positions {auto['mean_positions']:.0f} vs {full['mean_positions']:.0f})")
    else:
        r = measure(loaded, sources, options(args, args.steps, args.length))
        print(HEADER)
        print(row(label, loaded, args.steps, args, r))


# (preset, steps, lines, n, mbr) for --sweep; sizes keep the whole sweep to a few minutes on one core.
SWEEP = [
    ("tiny", 20, 256, 1, False), ("tiny", 20, 64, 10, True), ("tiny", 100, 128, 1, False), ("tiny", 2000, 16, 1, False),
    ("small", 20, 128, 1, False), ("small", 20, 16, 10, True), ("small", 100, 32, 1, False), ("small", 2000, 4, 1, False),
]
SWEEP_LENGTH = [("tiny", 20, 256), ("small", 20, 64)]


def sweep(args, sources: list[str]) -> None:
    print(HEADER)
    for preset, steps, lines, n, mbr in SWEEP:
        a = replace_args(args, n=n, mbr=mbr)
        loaded = load_model_folder(preset_model(preset, args.work))
        r = measure(loaded, sources[:lines], options(a, steps, "auto"))
        print(row(preset, loaded, steps, a, r), flush=True)
    print("\n| model | steps | lines | auto: positions, lines/s | full: positions, lines/s | speed-up |\n|---|---|---|---|---|---|")
    for preset, steps, lines in SWEEP_LENGTH:
        a = replace_args(args, n=1, mbr=False)
        loaded = load_model_folder(preset_model(preset, args.work))
        auto = measure(loaded, sources[:lines], options(a, steps, "auto"))
        full = measure(loaded, sources[:lines], options(a, steps, "full"))
        print(f"| {preset} | {steps} | {lines} | {auto['mean_positions']:.0f}, {auto['lines_per_s']:.2f} "
              f"| {full['mean_positions']:.0f}, {full['lines_per_s']:.2f} | {auto['lines_per_s'] / full['lines_per_s']:.2f}x |",
              flush=True)


def length_fit(loaded) -> None:
    from diffuseq_cli.evaluation.metrics import sentence_bleu
    from diffuseq_cli.generation import target_length
    from diffuseq_cli.training.data import length_stats, tokenize_file

    tok, seq = loaded.tokenizer, loaded.config.sequence
    p99, ratio = length_stats(tokenize_file(QQP_TRAIN, tok, seq.seq_len))
    seq = replace(seq, target_len_p99=p99, target_ratio_p99=round(ratio, 4))
    pairs = list(read_pairs(QQP_VALID))
    xs, ys = tok.encode([s for s, _, _ in pairs]), tok.encode([t for _, t, _ in pairs])
    fit = positions = 0
    cut_bleu = full_bleu = 0.0
    for (_, trg, _), x, y in zip(pairs, xs, ys):
        n_src = min(len(x), seq.seq_len - 11) + 3
        room = target_length(n_src, seq, "auto")
        positions += n_src + room
        fit += len(y) + 2 <= room  # [CLS] y [SEP] must fit
        ref = " ".join(trg.split())
        cut_bleu += sentence_bleu(tok.decode([y[: max(0, room - 2)]])[0], ref)
        full_bleu += sentence_bleu(tok.decode([y])[0], ref)
    n = len(pairs)
    print(f"length statistics from {QQP_TRAIN.name}: target p99 {p99} tokens, target/source p99 {ratio:.3f}")
    print(f"{QQP_VALID.name}: {fit / n:.2%} of {n} references fit the auto target region; "
          f"mean positions {positions / n:.1f} (full: {seq.seq_len})")
    print(f"BLEU of references cut to the region: {cut_bleu / n:.4f} (uncut, through the tokenizer: {full_bleu / n:.4f})")


def replace_args(args, **changes):
    new = argparse.Namespace(**vars(args))
    for key, value in changes.items():
        setattr(new, key, value)
    return new


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group()
    what.add_argument("--model", type=Path, help="a model folder")
    what.add_argument("--preset", choices=["tiny", "small", "base"], help="random weights of this size (built once under --work)")
    what.add_argument("--sweep", action="store_true", help="tiny and small at 20, 100, 2000 steps, and auto vs full")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("-n", type=int, default=1, help="candidates per line")
    p.add_argument("--mbr", action="store_true")
    p.add_argument("--sampler", default="ddim", choices=["ddim", "ddpm"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lines", type=int, default=200)
    p.add_argument("--length", default="auto", choices=["auto", "full"])
    p.add_argument("--compare-length", action="store_true", help="--length auto vs full on the same lines")
    p.add_argument("--length-fit", action="store_true", help="how many QQP valid references fit the auto target region")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steady numbers on a shared machine)")
    p.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "diffuseq-bench")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    sources = [s for s, _, _ in itertools.islice(read_pairs(QQP_VALID), max(args.lines, 256))]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} CPUs, load average {load:.1f}\n")
    if args.length_fit:
        length_fit(load_model_folder(args.model or preset_model(args.preset or "small", args.work)))
    elif args.sweep:
        sweep(args, sources)
    elif args.preset:
        run_one(args, preset_model(args.preset, args.work), f"{args.preset} (random weights)", sources[: args.lines])
    else:
        run_one(args, args.model or p.error("give --model, --preset or --sweep"), str(args.model), sources[: args.lines])


if __name__ == "__main__":
    main()
