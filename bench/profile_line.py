"""Where one `generate -n 10 --mbr` line's time goes (issue 20): the model against everything else.

    OMP_NUM_THREADS=1 python bench/profile_line.py --lines 1 --repeats 20 --sampler dpm++ --steps 5

Runs ``generate_stream`` (what ``diffuseq generate`` runs) with the embedded model on the first
``--lines`` QQP valid sources, ``--repeats`` times, under cProfile, after one untimed run, and
prints one JSON object: seconds per line and each part's share of the time, from the cumulative
time of the functions that do it: the denoiser's forward (the model), the vocabulary head
(re-masking's confidence, rounding, the final logits), re-masking's choice, the sampler's
step, the length head (the length beam's lengths), MBR and its choice, decoding ids to text; the
rest is bookkeeping. Run it on older code with ``PYTHONPATH`` pointing at that tree.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # after PYTHONPATH: an older tree given there wins

PARTS = {  # part -> (file suffix, function) whose cumulative time it is
    "model": [],  # the denoiser's outermost forward (below)
    "head": [("core/rounding.py", "head_choice"), ("core/rounding.py", "round_estimate"), ("core/model.py", "logits")],
    "remask_choice": [("core/remasking.py", "pick"), ("core/remasking.py", "absorb")],
    "sampler_step": [("core/samplers.py", "step")],
    "length_head": [("generation/jobs.py", "predicted_lengths")],
    "mbr": [("evaluation/mbr.py", "mbr_select"), ("evaluation/choice.py", "choose")],
    "decode": [("generation/batches.py", "decode_rows")],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--sampler", default="dpm++")
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    import torch

    from diffuseq_cli.generation import GenerateOptions, SamplingConfig, generate_stream
    from diffuseq_cli.modelfiles.folder import load_model_folder

    torch.set_num_threads(1)
    valid = ROOT.parent / "shared" / "data" / "QQP" / "valid.jsonl"
    sources = [json.loads(x)["src"] for x in valid.read_text(encoding="utf-8").splitlines()[: args.lines]]
    loaded = load_model_folder(ROOT / "diffuseq_cli" / "models" / "paraphrase")
    opts = GenerateOptions(num_samples=10, mbr=True, sampling=SamplingConfig(sampler=args.sampler, steps=args.steps))
    list(generate_stream(loaded, sources, opts))  # warm-up
    profile = cProfile.Profile()
    t0 = time.perf_counter()
    profile.enable()
    for _ in range(args.repeats):
        list(generate_stream(loaded, sources, opts))
    profile.disable()
    seconds = time.perf_counter() - t0
    stats = pstats.Stats(profile).stats  # (file, line, name) -> (calls, primitive calls, tottime, cumtime, callers)
    total = sum(v[2] for v in stats.values())

    def cumulative(file: str, name: str) -> list[float]:
        return [v[3] for (f, _, n), v in stats.items() if f.endswith(file) and n == name]

    shares = {part: sum(t for file, name in functions for t in cumulative(file, name)) for part, functions in PARTS.items()}
    shares["model"] = max(cumulative("core/model.py", "forward"), default=0.0)  # the outermost forward holds its layers'
    shares["other"] = total - sum(shares.values())
    out = {"lines": args.lines, "repeats": args.repeats, "sampler": args.sampler, "steps": args.steps,
           "seconds_per_line": round(seconds / (args.lines * args.repeats), 4),
           "share": {k: round(v / total, 4) for k, v in shares.items()}}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
