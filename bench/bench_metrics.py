"""Benchmark: the whole evaluate report (per-file, self-BLEU, div-4, MBR) ours vs NLTK per pair.

    python bench/bench_metrics.py [--sources 2500] [--samples 10]
    python bench/bench_metrics.py --dump cands.txt   # input for timing `diffuseq rerank cands.txt -n 10`

Data: QQP valid references (cycled to --sources lines); each of the --samples
candidates is the reference with words dropped and neighbours swapped under a
fixed seed, so sets overlap the way real samples do. The baseline is what the
official evaluation does: NLTK ``sentence_bleu`` called afresh for every pair
(per-file lines, self-BLEU pairs i < j, and the full K x K MBR matrix); its
ROUGE-L, dist-1 and div-4 use our functions, so the ratio is about BLEU
counting. Both sides must give the same numbers; the script checks that.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
import warnings
from pathlib import Path

import numpy as np
from nltk.translate.bleu_score import SmoothingFunction
from nltk.translate.bleu_score import sentence_bleu as nltk_bleu

from diffuseq_cli.evaluation import metrics
from diffuseq_cli.evaluation.report import evaluate

QQP = Path(__file__).resolve().parents[2] / "shared" / "data" / "QQP" / "valid.jsonl"


def build(sources: int, samples: int, seed: int = 0) -> tuple[list[list[str]], list[str]]:
    rows = [json.loads(line)["trg"] for line in QQP.read_text(encoding="utf-8").splitlines()]
    refs = [rows[i % len(rows)] for i in range(sources)]
    rng = random.Random(seed)
    columns = [[] for _ in range(samples)]
    for ref in refs:
        for column in columns:
            words = [w for w in ref.split() if rng.random() > 0.1]
            for _ in range(rng.randint(0, 2)):
                if len(words) > 1:
                    i = rng.randrange(len(words) - 1)
                    words[i], words[i + 1] = words[i + 1], words[i]
            column.append(" ".join(words))
    return columns, refs


def nltk_report(columns: list[list[str]], refs: list[str]) -> dict:
    """The official way: every BLEU from scratch with NLTK."""
    smooth = SmoothingFunction().method4

    def bleu(hyp, ref):
        return nltk_bleu([ref.split()], hyp.split(), smoothing_function=smooth)

    files = []
    for column in columns:
        files.append({
            "bleu": np.mean([bleu(h, r) for h, r in zip(column, refs)]),
            "rouge_l": np.mean([metrics.rouge_l(h, r) for h, r in zip(column, refs)]),
            "dist_1": np.mean([metrics.distinct_n([h], 1) for h in column]),
            "avg_len": np.mean([metrics.avg_len(h) for h in column]),
        })
    self_bleu, div_4, choice = [], [], []
    for cands in zip(*columns):
        k = len(cands)
        self_bleu.append(np.mean([bleu(cands[i], cands[j]) for i in range(k) for j in range(i + 1, k)]))
        div_4.append(metrics.distinct_n(cands, 4))
        matrix = [[bleu(a, b) for b in cands] for a in cands]
        for i in range(k):
            matrix[i][i] = 0
        choice.append(int(np.argmax(np.sum(matrix, -1))))
    return {"files": files, "self_bleu": np.mean(self_bleu), "div_4": np.mean(div_4), "mbr_choice": choice}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sources", type=int, default=2500)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--dump", type=Path, help="Only write the candidates (K consecutive lines per source) here.")
    args = parser.parse_args()
    columns, refs = build(args.sources, args.samples)
    if args.dump:
        args.dump.write_text("".join(c + "\n" for row in zip(*columns) for c in row), encoding="utf-8")
        return

    wall, cpu = time.perf_counter(), time.process_time()
    ours = evaluate(columns, refs, mbr=True)
    ours_s, ours_cpu = time.perf_counter() - wall, time.process_time() - cpu

    wall, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = nltk_report(columns, refs)
    base_s, base_cpu = time.perf_counter() - wall, time.process_time() - cpu

    same = ours.mbr_choice == base["mbr_choice"] and math.isclose(ours.self_bleu, base["self_bleu"], abs_tol=1e-12)
    same &= all(math.isclose(o.bleu, b["bleu"], abs_tol=1e-12) for o, b in zip(ours.files, base["files"]))
    pairs = args.sources * (args.samples + args.samples * (args.samples - 1))
    print(f"{args.sources} sources x {args.samples} samples ({pairs} BLEU pairs in the report)")
    print(f"ours (diffuseq_cli.evaluation.report):  {ours_s:8.2f} s wall {ours_cpu:8.2f} s CPU")
    print(f"NLTK sentence_bleu per pair:   {base_s:8.2f} s wall {base_cpu:8.2f} s CPU")
    print(f"speed-up (CPU time):           {base_cpu / ours_cpu:8.1f} x")
    print(f"same numbers: {same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
