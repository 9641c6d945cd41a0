"""`diffuseq generate` commands side by side in one run: wall time (start-up included) and quality.

    python bench/compare_generate.py --input held.jsonl --variant default= \\
        --variant "ddim20=--sampler ddim --steps 20" --rounds 2 --out docs/data/compare-default-ddim20.jsonl
    python bench/compare_generate.py --input held.jsonl --variant "one=--threads 2 :: --nproc 1" --variant default=

Each round runs every variant once, as ``diffuseq generate --task paraphrase -n 10 --mbr -q``
plus the variant's options (``--common`` replaces the shared part; options before ``::`` go before
``generate``, as ``--threads``), on the sources of ``--input``
(JSONL with src and trg; ``first:stop`` after the path takes those lines), alternating the order
from round to round (A B, B A, ...) so that a change in the machine's load falls on both. The
outputs are scored as ``diffuseq evaluate --sources`` does (BLEU, iBLEU, repeats, copies) with the
share of statements turned into questions; a variant must write the same bytes in every round.
One JSON row per run goes to ``--out``, then a summary row per variant: its median seconds and
their ratio to the first variant's.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from sweep_steps import read_set, score  # noqa: E402


def run(command: list[str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"{shlex.join(command)} failed:\n{r.stderr[-2000:]}")
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", required=True, help="path.jsonl[:first:stop]")
    ap.add_argument("--variant", action="append", required=True, help="name=options, repeatable; the first is the baseline")
    ap.add_argument("--common", default="--task paraphrase -n 10 --mbr -q")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    _, sources, refs, first = read_set(f"set={args.input}")
    variants = []
    for v in args.variant:
        name, options = v.split("=", 1)
        front, _, back = options.rpartition("::")
        variants.append((name, shlex.split(front), shlex.split(back)))
    seconds: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    outputs: dict[str, bytes] = {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src.txt"
        src.write_text("".join(s + "\n" for s in sources), encoding="utf-8")
        for round_ in range(args.rounds):
            order = variants if round_ % 2 == 0 else variants[::-1]
            for name, front, options in order:
                out = Path(tmp) / f"{name}.txt"
                command = [sys.executable, "-m", "diffuseq_cli", *front, "generate", "-i", str(src), "-o", str(out),
                           *shlex.split(args.common), *options]
                took = run(command)
                seconds[name].append(took)
                data = out.read_bytes()
                if outputs.setdefault(name, data) != data:
                    raise SystemExit(f"{name}: round {round_ + 1} wrote other bytes than round 1")
                row = {"variant": name, "options": shlex.join(front + ["generate"] + options), "round": round_ + 1, "seconds": round(took, 1),
                       "lines": len(sources), "first_line": first}
                print(json.dumps(row), flush=True)
                rows.append(row)
        base = statistics.median(seconds[variants[0][0]])
        for name, front, options in variants:
            best = [line for line in outputs[name].decode("utf-8").splitlines()]
            records = [{"best": b, "src": s} for b, s in zip(best, sources)]
            median = statistics.median(seconds[name])
            row = {"variant": name, "options": shlex.join(front + ["generate"] + options), "common": args.common, "input": args.input,
                   "lines": len(sources), "median_seconds": round(median, 1),
                   "time_vs_first": round(median / base, 3), **score(records, refs)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    with open(args.out, "a", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
