"""A data set's own references scored by `diffuseq evaluate`: how often they repeat a word or copy their source.

    python bench/reference_stats.py ../shared/data/QQP/valid.jsonl > docs/data/qqp-valid-references.json

The baselines the report's `repeat` and `copy` columns are read against (docs/evaluate.md): the
references are written to a text file and scored as predictions against themselves with
``--sources``, through the real command. Prints one JSON object: the command's report, and the
counts of lines behind each share.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from diffuseq_cli.training.data import read_pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="a JSONL file of {src, trg} pairs")
    args = ap.parse_args()
    pairs = [(src, trg) for src, trg, _ in read_pairs(args.data)]
    with tempfile.TemporaryDirectory() as tmp:
        refs, srcs = Path(tmp) / "references.txt", Path(tmp) / "sources.txt"
        refs.write_text("".join(" ".join(t.split()) + "\n" for _, t in pairs), encoding="utf-8")
        srcs.write_text("".join(" ".join(s.split()) + "\n" for s, _ in pairs), encoding="utf-8")
        command = ["diffuseq", "evaluate", "references.txt", "references.txt", "--sources", "sources.txt", "-f", "json"]
        out = subprocess.run([sys.executable, "-m", "diffuseq_cli", *command[1:]], cwd=tmp, check=True,
                             capture_output=True, text=True).stdout
    report = json.loads(out)
    lines = report["lines"]
    rows = {"references": report["files"][0], "sources": report["source"]}
    counts = {name: {key: round(row[key] * lines) for key in ("repeat", "copy")} for name, row in rows.items()}
    print(json.dumps({"data": str(args.data), "command": " ".join(command), "lines": lines, "counts": counts,
                      "report": report}, indent=1))


if __name__ == "__main__":
    main()
