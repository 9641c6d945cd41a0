"""BLEU differences between settings, line by line, with their standard error (issue 20).

    python bench/paired_bleu.py --work /tmp/sweep --set qqp=../shared/data/QQP/valid.jsonl:0:512 \\
        --set mrpc=/tmp/pdata/mrpc_valid.jsonl --against ddim-20 >> docs/data/steps-paired.jsonl

For each set and each setting that ``bench/sweep_steps.py`` sampled into ``--work``
(``{set}-{first}-{sampler}-{steps}.jsonl``), the mean over lines of (the setting's sentence BLEU
minus the ``--against`` setting's), the standard error of that mean, and the share of lines whose
chosen output is the same: a difference of two standard errors or less is within the noise of
these lines. One JSON row per (set, setting); settings sampled on fewer lines than the set's are
left out.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from diffuseq_cli.evaluation import metrics  # noqa: E402
from sweep_steps import read_set  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--set", action="append", required=True, help="name=path.jsonl[:first:stop], as for sweep_steps.py")
    ap.add_argument("--against", default="ddim-20", help="sampler-steps of the reference setting")
    args = ap.parse_args()
    for spec in args.set:
        name, _, refs, first = read_set(spec)
        ref_stats = [metrics.prepare(r) for r in refs]

        def per_line(path: Path) -> tuple[list[float], list[str]] | None:
            """Each line's sentence BLEU and chosen output; None when the file covers fewer lines."""
            records = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()][: len(refs)]
            if len(records) < len(refs):
                return None
            best = [r["best"] for r in records]
            return [metrics.sentence_bleu(metrics.prepare(b), s) for b, s in zip(best, ref_stats)], best

        against = per_line(args.work / f"{name}-{first}-{args.against}.jsonl")
        if against is None:
            raise SystemExit(f"{args.against} covers fewer lines of {name} than the set's {len(refs)}")
        base, base_best = against
        for path in sorted(args.work.glob(f"{name}-{first}-*.jsonl")):
            setting = path.stem[len(f"{name}-{first}-"):]
            if setting == args.against:
                continue
            sampled = per_line(path)
            if sampled is None:  # sampled on fewer lines: not this set's
                continue
            scores, best = sampled
            diff = [a - b for a, b in zip(scores, base)]
            mean = math.fsum(diff) / len(diff)
            se = math.sqrt(math.fsum((d - mean) ** 2 for d in diff) / (len(diff) - 1) / len(diff))
            sampler, steps = setting.rsplit("-", 1)
            print(json.dumps({"set": name, "lines": len(diff), "sampler": sampler, "steps": int(steps),
                              "against": args.against, "bleu_diff": round(mean, 4), "se": round(se, 4),
                              "same_output": round(sum(a == b for a, b in zip(best, base_best)) / len(best), 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
