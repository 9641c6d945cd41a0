"""How long `diffuseq generate -i FILE | head -1` takes, for one or more source trees side by side.

    git archive 0a6ffe8 | tar -x -C /tmp/before      # the tree to compare with
    python bench/head_generate.py --lines 200 --tree /tmp/before --tree . --rounds 2 \
        --out docs/data/generate-head-1.json

Each round runs every tree once, in turn (so that a busy machine slows them alike), with the
embedded model and the default options, on the first ``--lines`` sources of QQP valid. It
records the wall time of the whole pipeline and what the command wrote on stderr (it should be
nothing). The trees share this Python and its packages; only ``diffuseq_cli`` is taken from each
(the command runs in a temporary folder, so that no tree is found first by being the current one).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", action="append", required=True, help="a source tree holding diffuseq_cli/")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "QQP" / "valid.jsonl"))
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    lines = Path(args.data).read_text(encoding="utf-8").splitlines()[: args.lines]
    src = Path(tempfile.mkdtemp()) / "big.txt"
    src.write_text("".join(json.loads(line)["src"] + "\n" for line in lines), encoding="utf-8")
    runs = []
    for round_ in range(args.rounds):
        for tree in args.tree:
            env = dict(os.environ, PYTHONPATH=str(Path(tree).resolve()), OMP_NUM_THREADS="1")
            stderr = Path(tempfile.mkdtemp()) / "stderr.txt"
            command = f"{sys.executable} -m diffuseq_cli generate -i {src} 2>{stderr} | head -1"
            start = time.perf_counter()
            r = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, cwd=src.parent)
            runs.append({"round": round_, "tree": tree, "seconds": round(time.perf_counter() - start, 2),
                         "status": r.returncode, "stdout": r.stdout, "stderr": stderr.read_text()})
            print(json.dumps(runs[-1]), flush=True)
    figures = {"command": " ".join(["python", "bench/head_generate.py", *sys.argv[1:]]), "lines": len(lines), "runs": runs}
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
