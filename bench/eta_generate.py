"""How far off `generate`'s ETA is at each share of a job, counted in lines out, candidates sampled
or model calls, and so what to count and from which share to show it.

    python bench/eta_generate.py --lines 200 -n 1 --out docs/data/eta-generate-n1.json

It runs the path the command runs (``generate_stream`` over QQP valid sources, the embedded
model unless ``--model``), records when each line comes out and when each batch of candidates
is done (from the first line in, as the command's clock), and, at each share of the job, compares
an ETA from the average rate so far with the time the job really took from there: ``by_lines``
counts lines written (they come out in input order, so late in bursts), ``by_candidates``
counts candidates sampled, ``by_calls`` counts model calls, which the stream can count ahead
once the input is read (what ``commands.generate_run.eta_text`` uses). A ratio of 1 is exact;
2 means the ETA said twice the real rest.

``--nproc N`` runs the path of several workers (``generation.parallel``, the CPU default), where
only lines out can be counted (each worker's batches are its own): ``by_lines`` alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from diffuseq_cli.api import DiffuSeq  # noqa: E402
from diffuseq_cli.generation import GenerateOptions, SamplingConfig, generate_stream  # noqa: E402

SHARES = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8)


def _row(share: float, elapsed: float, done: int, of: int, total: float) -> dict:
    eta = elapsed / done * (of - done)
    rest = total - elapsed
    return {"share": share, "done": done, "of": of, "elapsed_s": round(elapsed, 2), "eta_s": round(eta, 2),
            "real_rest_s": round(rest, 2), "eta_over_real": round(eta / rest, 3) if rest > 0 else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="model (default: the embedded paraphrase model)")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "QQP" / "valid.jsonl"))
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("-n", type=int, default=1)
    parser.add_argument("--nproc", type=int, default=None, help="workers (generate --nproc); default: one stream")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    sources = [json.loads(line)["src"] for line in Path(args.data).read_text(encoding="utf-8").splitlines()[: args.lines]]
    loaded = DiffuSeq.from_pretrained(args.model, task=None if args.model else "paraphrase").loaded
    opts = GenerateOptions(num_samples=args.n, mbr=args.n > 1, sampling=SamplingConfig())
    work: list[tuple[float, int, int | None]] = []  # (seconds, candidates sampled so far, calls left)
    start = time.perf_counter()

    def on_batch(count: int, calls_left: int | None) -> None:
        work.append((time.perf_counter() - start, (work[-1][1] if work else 0) + count, calls_left))

    if args.nproc:
        from diffuseq_cli.generation.parallel import generate_parallel, worker_devices

        results = generate_parallel(loaded, iter(sources), opts, worker_devices("cpu", args.nproc))
    else:
        results = generate_stream(loaded, iter(sources), opts, on_batch=on_batch)
    out_at = [time.perf_counter() - start for _ in results]
    total = out_at[-1]
    by_lines = [_row(share, out_at[max(1, round(share * len(out_at))) - 1], max(1, round(share * len(out_at))),
                     len(out_at), total) for share in SHARES]
    by_candidates = []
    for share in SHARES if work else ():
        seconds, done = next((t, c) for t, c, _ in work if c >= share * work[-1][1])
        by_candidates.append(_row(share, seconds, done, work[-1][1], total))
    by_calls = []
    for share in SHARES if work else ():
        k = max(1, round(share * len(work)))
        seconds, _, left = work[k - 1]
        by_calls.append(_row(share, seconds, k, k + left, total) if left is not None else {"share": share, "left": None})
    first = {"lines_done": 1, "elapsed_s": round(out_at[0], 2), "eta_s": round(out_at[0] * (len(sources) - 1), 2),
             "real_rest_s": round(total - out_at[0], 2)}
    figures = {"command": " ".join(["python", "bench/eta_generate.py", *sys.argv[1:]]), "lines": len(sources),
               "num_samples": args.n, "nproc": args.nproc, "total_s": round(total, 2), "threads": os.environ.get("OMP_NUM_THREADS"),
               "after_the_first_line": first, "by_lines": by_lines, "by_candidates": by_candidates,
               "by_calls": by_calls}
    text = json.dumps(figures, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
