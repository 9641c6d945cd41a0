"""The fewest steps that lose nothing (issue 20): quality per sampler and step count, on paraphrase sets.

    python scripts/paraphrase_data.py --out /tmp/pdata            # mrpc_valid.jsonl (held out of training)
    python bench/sweep_steps.py --set qqp=../shared/data/QQP/valid.jsonl:0:1024 \\
        --set mrpc=/tmp/pdata/mrpc_valid.jsonl --samplers dpm++,ddim --steps 3,4,5,7,10,20 \\
        --work /tmp/sweep --out docs/data/steps-sweep.jsonl

Each (set, sampler, steps) is generated once as ``diffuseq generate --task paraphrase -n 10 --mbr
--format jsonl --sampler S --steps K`` would (the embedded model's own decoding otherwise), by
``--procs`` one-thread processes on consecutive parts of the lines, each numbering its lines from
its part's start, so the candidates are those of one process (their seeds count input lines).
The JSONL (every candidate) goes to ``--work``; one row of scores per setting is appended to
``--out``: BLEU of the MBR choice, iBLEU, the share of lines repeating a word, the share equal to
their source (as ``diffuseq evaluate --sources`` scores them), the share of statements turned into
questions (as ``bench/gpu_run.py``), and the wall seconds (a shared machine: for speed, compare
side by side in one run: bench/compare_generate.py). Lines an earlier run of the setting already
sampled (from the same first line) are scored again, not sampled again; ``seconds`` then counts
only the lines sampled now.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def read_set(spec: str) -> tuple[str, list[str], list[str], int]:
    """``name=path[:first:stop]`` -> (name, sources, references, index of the first line in the file)."""
    name, rest = spec.split("=", 1)
    path, *cut = rest.split(":")
    rows = [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines() if x.strip()]
    first, stop = (int(cut[0]), int(cut[1])) if cut else (0, len(rows))
    rows = rows[first:stop]
    return name, [" ".join(r["src"].split()) for r in rows], [" ".join(r["trg"].split()) for r in rows], first


def _part(args) -> str:
    """One process's share: its lines through generate_stream, numbered from ``first``; JSONL text."""
    sources, first, sampler, steps, model = args
    import torch

    torch.set_num_threads(1)
    from diffuseq_cli.generation import GenerateOptions, SamplingConfig, format_result, generate_stream
    from diffuseq_cli.modelfiles.folder import load_model_folder

    loaded = load_model_folder(model)
    opts = GenerateOptions(num_samples=10, mbr=True, sampling=SamplingConfig(sampler=sampler, steps=steps))
    return "".join(format_result(r, "jsonl", 10, True) for r in generate_stream(loaded, sources, opts, start_line=first))


def generate(sources: list[str], first: int, sampler: str, steps: int, procs: int, model: Path) -> str:
    size = -(-len(sources) // procs)
    parts = [(sources[i:i + size], first + i, sampler, steps, model) for i in range(0, len(sources), size)]
    env = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # the workers inherit it before torch loads
    try:
        with multiprocessing.get_context("spawn").Pool(len(parts)) as pool:
            return "".join(pool.map(_part, parts))
    finally:
        if env is None:
            os.environ.pop("OMP_NUM_THREADS")
        else:
            os.environ["OMP_NUM_THREADS"] = env


def earlier(work: Path, name: str, first: int, sampler: str, steps: int, sources: list[str]) -> list[dict]:
    """The records of an earlier run of this setting from the same first line, as far as they cover
    these sources (candidates depend on their line alone: a longer run's first lines are a shorter one's)."""
    best: list[dict] = []
    for path in sorted(work.glob(f"{name}-{first}-{sampler}-{steps}.jsonl")):
        records = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()][: len(sources)]
        same = 0
        while same < len(records) and records[same]["src"] == sources[same]:
            same += 1
        best = max(best, records[:same], key=len)
    return best


def score(records: list[dict], refs: list[str]) -> dict:
    from diffuseq_cli.evaluation.report import evaluate
    from gpu_run import question_share

    best = [r["best"] for r in records]
    srcs = [r["src"] for r in records]
    row = evaluate([best], refs, sources=srcs).files[0]
    return {"bleu": round(row.bleu, 4), "ibleu": round(row.ibleu, 4), "repeat": round(row.repeat, 4),
            "copy": round(row.copy, 4), "questions": round(question_share(best, srcs), 4)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", action="append", required=True, help="name=path.jsonl[:first:stop], repeatable")
    ap.add_argument("--samplers", default="dpm++,ddim")
    ap.add_argument("--steps", default="3,4,5,7,10,20")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--model", type=Path, default=ROOT / "diffuseq_cli" / "models" / "paraphrase")
    ap.add_argument("--work", type=Path, required=True, help="where each setting's JSONL goes")
    ap.add_argument("--out", type=Path, required=True, help="score rows are appended here")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    sets = [read_set(s) for s in args.set]
    for steps in [int(s) for s in args.steps.split(",")]:
        for sampler in args.samplers.split(","):
            for name, sources, refs, first in sets:
                path = args.work / f"{name}-{first}-{sampler}-{steps}.jsonl"
                records, seconds = earlier(args.work, name, first, sampler, steps, sources), None
                if len(records) < len(sources):  # sample the lines no earlier run covered
                    t0 = time.perf_counter()
                    text = generate(sources[len(records):], first + len(records), sampler, steps, args.procs, args.model)
                    seconds = round(time.perf_counter() - t0, 1)
                    records += [json.loads(x) for x in text.splitlines()]
                    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
                row = {"set": name, "lines": len(records), "first_line": first, "sampler": sampler, "steps": steps,
                       **score(records, refs), "seconds": seconds, "procs": args.procs}
                print(json.dumps(row), flush=True)
                with open(args.out, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
