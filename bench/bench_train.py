"""Benchmark: training throughput (samples/s, tokens/s) of the model presets, steady state.

    python bench/bench_train.py [--presets tiny,small] [--batch-size 64] [--steps 10] [--threads 1,2]

Data: QQP train (``../shared/data/QQP/train.jsonl``), a BPE of --vocab-size trained on it
and packed at --seq-len (the ``fast`` recipe's 64 by default), in the length-aware batches
training uses. For each preset and thread count, --warmup steps are run and not timed, then
--steps full optimisation steps (forward, backward, AdamW, EMA, loss-aware sampler update)
are timed. "tokens/s" counts the positions computed (the batch padded to its longest
sequence, rounded up to 8), "real tokens/s" only the tokens of the pairs.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from diffuseq_cli.training.config import with_recipe
from diffuseq_cli.training.distributed import Placement
from diffuseq_cli.training.run import Trainer, prepare_run

QQP_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "QQP" / "train.jsonl"


def measure(cfg, tokenizer, warmup: int, steps: int) -> dict:
    trainer = Trainer(cfg, tokenizer, Placement(0, 1, torch.device("cpu")), None)
    for _ in range(warmup):
        trainer.train_step()
    times, tokens, real = [], 0, 0
    for _ in range(steps):
        t0 = time.perf_counter()
        out = trainer.train_step()
        times.append(time.perf_counter() - t0)
        tokens += out["tokens"]
        real += out["real_tokens"]
    total = sum(times)
    return {
        "parameters": trainer.model.num_parameters(),
        "ms_per_step_median": round(1000 * statistics.median(times), 1),
        "samples_per_s": round(steps * cfg.batch_size / total, 1),
        "tokens_per_s": round(tokens / total),
        "real_tokens_per_s": round(real / total),
        "mean_positions": round(tokens / steps / cfg.batch_size, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(QQP_TRAIN))
    ap.add_argument("--presets", default="tiny,small")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--vocab-size", type=int, default=8000)
    ap.add_argument("--diffusion-steps", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--steps", type=int, default=8, help="timed steps")
    ap.add_argument("--threads", default=str(torch.get_num_threads()), help="intra-op thread counts to try, e.g. 1,2")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        base = dict(data=args.data, batch_size=args.batch_size, seq_len=args.seq_len, vocab_size=args.vocab_size,
                    diffusion_steps=args.diffusion_steps, steps=10_000, out=str(Path(tmp) / "run"))
        t0 = time.perf_counter()
        cfg, tokenizer = prepare_run(with_recipe("fast", **base, preset="tiny"), resume=False)
        prepare_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        prepare_run(with_recipe("fast", **base, preset="tiny"), resume=True)
        cached_s = time.perf_counter() - t0
        print(f"# data {args.data}: BPE + tokenization {prepare_s:.1f} s, from the cache {cached_s:.2f} s")
        print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
              f"batch {args.batch_size}, seq_len {args.seq_len}, T {args.diffusion_steps}")
        print("| preset | parameters | threads | ms/step (median) | samples/s | tokens/s | real tokens/s | positions/sample |")
        print("|---|---|---|---|---|---|---|---|")
        results = []
        for preset in args.presets.split(","):
            for threads in (int(t) for t in args.threads.split(",")):
                torch.set_num_threads(threads)
                run_cfg = with_recipe("fast", **base, preset=preset)
                r = measure(run_cfg, tokenizer, args.warmup, args.steps)
                r.update(preset=preset, threads=threads)
                results.append(r)
                print(f"| {preset} | {r['parameters']:,} | {threads} | {r['ms_per_step_median']} | {r['samples_per_s']} | "
                      f"{r['tokens_per_s']:,} | {r['real_tokens_per_s']:,} | {r['mean_positions']} |", flush=True)
        print(json.dumps(results))


if __name__ == "__main__":
    main()
