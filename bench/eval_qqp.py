"""Score a model on QQP valid under the paper's protocol, through the real commands.

    python bench/eval_qqp.py --model diffuseq_cli/models/paraphrase --steps 5 10 20 50 -n 1 --lines 2048
    python bench/eval_qqp.py --model diffuseq_cli/models/paraphrase --steps 20 -n 10 --lines 2048

For each step count: `diffuseq generate` (text, n consecutive lines per source), then
`diffuseq evaluate --sources` (with --mbr when n > 1). Prints one JSON line per setting
with BLEU, ROUGE-L, dist-1, the copy-the-source BLEU on the same lines, the share of
outputs identical to their source (of the MBR choices, from `diffuseq rerank`, when n > 1),
and generation lines/s.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QQP_VALID = Path(__file__).resolve().parents[2] / "shared" / "data" / "QQP" / "valid.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--steps", type=int, nargs="+", default=[20])
    ap.add_argument("-n", type=int, default=1)
    ap.add_argument("--lines", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--data", default=str(QQP_VALID))
    ap.add_argument("--rounding", choices=["l2", "logits", "none"], help="default: the model's own")
    args = ap.parse_args()

    pairs = [json.loads(x) for x in Path(args.data).read_text().splitlines() if x.strip()][: args.lines]
    tmp = Path(tempfile.mkdtemp())
    (tmp / "src.txt").write_text("".join(" ".join(p["src"].split()) + "\n" for p in pairs))
    (tmp / "ref.txt").write_text("".join(" ".join(p["trg"].split()) + "\n" for p in pairs))
    for steps in args.steps:
        out = tmp / f"out-{steps}.txt"
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "diffuseq_cli", "generate", "--model", args.model, "-i", str(tmp / "src.txt"),
             "-o", str(out), "-n", str(args.n), "--steps", str(steps), "--batch-size", str(args.batch_size), "-q",
             *(["--rounding", args.rounding] if args.rounding else [])],
            check=True,
        )
        seconds = time.perf_counter() - t0
        cmd = [sys.executable, "-m", "diffuseq_cli", "evaluate", str(out), str(tmp / "ref.txt"), "-n", str(args.n),
               "--sources", str(tmp / "src.txt"), "--format", "json"]
        if args.n > 1:
            cmd.append("--mbr")
        report = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        outs = out.read_text().splitlines()
        chosen = outs[:: args.n]
        if args.n > 1:
            chosen = subprocess.run([sys.executable, "-m", "diffuseq_cli", "rerank", str(out), "-n", str(args.n)],
                                    check=True, capture_output=True, text=True).stdout.splitlines()
        same = sum(o.split() == p["src"].split() for o, p in zip(chosen, pairs)) / len(pairs)
        print(json.dumps({"steps": steps, "n": args.n, "rounding": args.rounding or "model's", "lines": len(pairs), "seconds": round(seconds, 1),
                          "lines_per_s": round(len(pairs) / seconds, 3), "copy_share": round(same, 4), "report": report}),
              flush=True)


if __name__ == "__main__":
    main()
