"""Plot BLEU and generation speed against denoising steps (for docs/results.md).

    python bench/eval_qqp.py --model M --steps 5 10 20 50 -n 1 > results.jsonl
    python bench/plot_results.py results.jsonl -o docs/results-steps.png

matplotlib is needed for this script only; it is not a dependency of diffuseq.
"""

import argparse
import json


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("-o", "--output", default="docs/results-steps.png")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(x) for x in open(args.results) if x.strip()]
    rows = sorted((r for r in rows if r["n"] == 1), key=lambda r: r["steps"])
    steps = [r["steps"] for r in rows]
    bleu = [r["report"]["files"][0]["bleu"] for r in rows]
    speed = [r["lines_per_s"] for r in rows]
    copy = rows[0]["report"]["source"]["bleu"] if rows and rows[0]["report"].get("source") else None

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, bleu, marker="o", color="tab:blue", label="BLEU (1 sample)")
    if copy is not None:
        ax.axhline(copy, color="gray", linestyle="--", label="copy the source")
    ax.set_xscale("log")
    ax.set_xlabel("denoising steps (DDIM)")
    ax.set_ylabel("BLEU on QQP valid")
    ax2 = ax.twinx()
    ax2.plot(steps, speed, marker="s", color="tab:orange", label="lines/s (1 CPU thread)")
    ax2.set_ylabel("lines/s")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="center right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(args.output)


if __name__ == "__main__":
    main()
