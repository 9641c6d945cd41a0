"""Benchmark: the whole `diffuseq rerank` command (start-up included) per MBR metric: wall time and peak memory.

    python bench/bench_rerank.py [--sources 2500] [--samples 10] [--repeats 3] > docs/data/bench-rerank.jsonl

Input: the candidates of bench_metrics.py (QQP valid references with words dropped and swapped
under a fixed seed), K consecutive lines per source. Each run is one ``diffuseq rerank FILE -n K
--metric M -o OUT`` process, timed from start to exit; its peak resident memory is the kernel's
count for that process (``os.wait4``). Prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_metrics import build  # noqa: E402

METRICS = ("bleu", "rouge_l", "chrf")


def run_once(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one process."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed: {proc.stderr.read().decode()}")
    proc.returncode = 0
    proc.stderr.close()
    return wall, usage.ru_maxrss / 1024  # Linux reports kilobytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", type=int, default=2500)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    columns, _ = build(args.sources, args.samples)
    with tempfile.TemporaryDirectory() as tmp:
        cands, best = Path(tmp) / "cands.txt", Path(tmp) / "best.txt"
        cands.write_text("".join(c + "\n" for row in zip(*columns) for c in row), encoding="utf-8")
        for metric in METRICS:
            for repeat in range(args.repeats):
                command = [sys.executable, "-m", "diffuseq_cli", "rerank", str(cands), "-n", str(args.samples),
                           "--metric", metric, "-o", str(best)]
                wall, rss = run_once(command)
                print(json.dumps({"metric": metric, "repeat": repeat, "sources": args.sources, "samples": args.samples,
                                  "candidates": args.sources * args.samples, "seconds": round(wall, 3),
                                  "peak_rss_mb": round(rss, 1), "load_average": round(os.getloadavg()[0], 2)}),
                      flush=True)


if __name__ == "__main__":
    main()
