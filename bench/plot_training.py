"""Plot validation BLEU against wall time for training runs (for docs/training.md).

    python bench/plot_training.py runs/exp-fast runs/exp-paper -o docs/training-bleu.png

Reads each run's metrics.jsonl (records with "valid_bleu", written by --eval-every).
matplotlib is needed for this script only; it is not a dependency of diffuseq.
"""

import argparse
import json
from pathlib import Path


def wall_time(recs: list[dict]) -> list[float]:
    """Cumulative seconds per record; a run resumed by older code restarts its clock at 0."""
    out, offset, last = [], 0.0, 0.0
    for r in recs:
        t = r.get("elapsed_s", last - offset)
        if t + offset < last - 1e-6:
            offset = last
        last = t + offset
        out.append(last)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("-o", "--output", default="docs/training-bleu.png")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    copy = None
    for run in args.runs:
        recs = [json.loads(x) for x in (Path(run) / "metrics.jsonl").read_text().splitlines() if x.strip()]
        pts = [(t / 60, r["valid_bleu"]) for t, r in zip(wall_time(recs), recs) if "valid_bleu" in r]
        if not pts:
            continue
        copy = next((r["copy_source_bleu"] for r in recs if "copy_source_bleu" in r), copy)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=Path(run).name)
    if copy is not None:
        ax.axhline(copy, color="gray", linestyle="--", label="copy the source")
    ax.set_xlabel("wall time (minutes, 2 CPU cores)")
    ax.set_ylabel("validation BLEU (probe subset, 1 sample)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(args.output)


if __name__ == "__main__":
    main()
