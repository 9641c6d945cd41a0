"""What the target region's length is worth: one model, QQP valid, regions sized in several ways.

    python bench/eval_lengths.py --model diffuseq_cli/models/paraphrase --regions auto source reference
    python bench/eval_lengths.py --model runs/x/latest --regions predict reference -n 10 --lengths 3 --jobs 2

``reference``: exactly the reference's length in the model's tokens (the ceiling of any length
predictor); ``source``: the source's length; ``predict``: the model's length head; ``auto``/``full``:
``generate --length``. For each: BLEU, ROUGE-L, the share of outputs repeating a word
immediately (stutter), the share equal to their source (copy), and the mean absolute length
error in words against the reference, one JSON line each. With ``-n`` > 1 the MBR choice is scored.
Generation runs through the library (``generate_texts``), in ``--jobs`` one-thread processes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

QQP_VALID = Path(__file__).resolve().parents[2] / "shared" / "data" / "QQP" / "valid.jsonl"
REGIONS = ("reference", "source", "predict", "auto", "full")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--regions", nargs="+", choices=REGIONS, default=["auto", "source", "reference"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("-n", type=int, default=1)
    ap.add_argument("--lengths", type=int, default=1, help="length beam for --regions predict")
    ap.add_argument("--lines", type=int, default=2048)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--data", default=str(QQP_VALID))
    ap.add_argument("--remask-schedule", default="trained")
    ap.add_argument("--remask-repeats", action=argparse.BooleanOptionalAction, help="default: the model's")
    ap.add_argument("--remask", action=argparse.BooleanOptionalAction)
    ap.add_argument("--dedup", action="store_true")
    ap.add_argument("--avoid-copy", action="store_true", help="generate --avoid-copy (with -n > 1)")
    ap.add_argument("--variants", action="store_true",
                    help="with -n > 1: also score --dedup, --avoid-copy and both, chosen from the same candidates")
    ap.add_argument("--save", help="write the chosen outputs of each setting to SAVE-REGION.txt")
    args = ap.parse_args()

    from diffuseq_cli.generation import collapse_repeats
    from diffuseq_cli.modelfiles.folder import load_model_folder

    pairs = [json.loads(x) for x in Path(args.data).read_text().splitlines() if x.strip()][: args.lines]
    srcs = [" ".join(p["src"].split()) for p in pairs]
    refs = [" ".join(p["trg"].split()) for p in pairs]
    tok = load_model_folder(args.model).tokenizer
    words_of = {"reference": [len(x) for x in tok.encode(refs)], "source": [len(x) for x in tok.encode(srcs)]}
    for region in args.regions:
        words = words_of.get(region)
        opts = dict(steps=args.steps, length=region if region in ("predict", "auto", "full") else None, lengths=args.lengths,
                    remask=args.remask, remask_schedule=args.remask_schedule, remask_repeats=args.remask_repeats,
                    dedup=args.dedup)
        parts = [(i * len(srcs) // args.jobs, (i + 1) * len(srcs) // args.jobs) for i in range(args.jobs)]
        t0 = time.perf_counter()
        tasks = [(args.model, srcs[a:b], None if words is None else words[a:b], opts, args.n, a) for a, b in parts]
        os.environ["OMP_NUM_THREADS"] = "1"
        with ProcessPoolExecutor(args.jobs) as pool:
            cands = [c for part in pool.map(_generate_offset_task, tasks) for c in part]
        seconds = time.perf_counter() - t0
        variants = [(args.dedup, args.avoid_copy)]
        if args.variants and args.n > 1:
            variants += [v for v in ((True, False), (False, True), (True, True)) if v != variants[0]]
        for dedup, avoid in variants:
            sets = [[collapse_repeats(x) for x in c] for c in cands] if dedup and not args.dedup else cands
            chosen = [choose(c, src, args.n, avoid) for c, src in zip(sets, srcs)]
            report = {
                "region": region, "steps": args.steps, "n": args.n, "lengths": args.lengths, "lines": len(pairs),
                "remask_schedule": args.remask_schedule, "remask_repeats": args.remask_repeats, "dedup": dedup,
                "avoid_copy": avoid, "data": Path(args.data).parent.name, **score(chosen, refs, srcs),
                "seconds": round(seconds, 1),
            }
            print(json.dumps(report), flush=True)
            if args.save:
                tag = "".join(["-dedup" if dedup else "", "-avoid" if avoid else ""])
                Path(f"{args.save}-{region}{tag}.txt").write_text("".join(h + "\n" for h in chosen))


def choose(cands: list[str], src: str, n: int, avoid_copy: bool) -> str:
    """What ``generate`` writes: the one sample, or the MBR choice (not a copy of the source, if asked)."""
    from diffuseq_cli.evaluation.choice import Preferences, choose as prefer
    from diffuseq_cli.evaluation.mbr import mbr_select

    if n == 1:
        return cands[0]
    return cands[prefer(mbr_select(cands), cands, src, Preferences(avoid_copy=avoid_copy)).index]


def score(chosen: list[str], refs: list[str], srcs: list[str]) -> dict:
    """The library's report (``diffuseq evaluate --sources``), plus the length error against the references."""
    from diffuseq_cli.evaluation.report import evaluate

    report = evaluate([chosen], refs, sources=srcs)
    row, n = report.files[0], len(chosen)
    return {
        "bleu": round(row.bleu, 4), "rouge_l": round(row.rouge_l, 4), "stutter_share": round(row.repeat, 4),
        "ibleu": round(row.ibleu, 4), "copy_share": round(row.copy, 4),
        "length_error": round(sum(abs(len(h.split()) - len(r.split())) for h, r in zip(chosen, refs)) / n, 2),
        "mean_words": round(sum(len(h.split()) for h in chosen) / n, 2),
        "copy_source_bleu": round(report.source.bleu, 4),
    }


def _generate_offset_task(task: tuple) -> list[list[str]]:
    model, sources, words, opts_kw, n, first = task
    import torch

    torch.set_num_threads(1)
    from diffuseq_cli.generation import SamplingConfig, generate_texts
    from diffuseq_cli.modelfiles.folder import load_model_folder

    return generate_texts(load_model_folder(model), sources, n, SamplingConfig(**opts_kw), target_words=words, first_line=first)


if __name__ == "__main__":
    sys.exit(main())
