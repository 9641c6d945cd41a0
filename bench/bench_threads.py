"""Benchmark: `diffuseq generate` wall time by thread setting, on a quiet machine and beside a busy process.

    python bench/bench_threads.py --lines 32 -n 4

Settings: torch's default threads as the command had them before (OpenMP's default spinning:
torch imported before the command could set anything), today's default (a short spin, then
sleep: ``diffuseq_cli/threads.py``), never spinning (OMP_WAIT_POLICY=PASSIVE), and one thread
(``--threads 1``). "busy": one other process spins a one-thread matrix
product loop on the same cores for the whole measurement, as another job on a shared machine
would. Prints one JSON line per (load, setting) with the seconds and the ratio to the best
setting under the same load.
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

QQP_VALID = Path(__file__).resolve().parents[2] / "shared" / "data" / "QQP" / "valid.jsonl"
BUSY = "import torch\ntorch.set_num_threads(1)\na = torch.randn(512, 512)\nwhile True:\n    a = (a @ a).tanh()\n"
OLD = "import torch\nfrom diffuseq_cli.cli import main\nmain()\n"  # torch first: the wait policy comes too late


def run(prefix: list[str], args: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(prefix + args, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=32)
    ap.add_argument("-n", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--model", default=None, help="default: the embedded paraphrase model")
    args = ap.parse_args()
    srcs = [json.loads(x)["src"] for x in QQP_VALID.read_text().splitlines()[: args.lines]]
    tmp = Path(tempfile.mkdtemp())
    (tmp / "in.txt").write_text("\n".join(srcs) + "\n")
    gen = ["generate", "-i", str(tmp / "in.txt"), "-n", str(args.n), "-q", *(["-m", args.model] if args.model else [])]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    settings = {
        "old default (spinning wait)": ([sys.executable, "-c", OLD], gen),
        "default (short spin)": ([sys.executable, "-m", "diffuseq_cli"], gen),
        "OMP_WAIT_POLICY=PASSIVE": (["env", "OMP_WAIT_POLICY=PASSIVE", sys.executable, "-m", "diffuseq_cli"], gen),
        "--threads 1": ([sys.executable, "-m", "diffuseq_cli", "--threads", "1"], gen),
    }
    for load in ("quiet", "busy"):
        burner = subprocess.Popen([sys.executable, "-c", BUSY], env=env) if load == "busy" else None
        try:
            times = {name: min(run(prefix, a, env) for _ in range(args.repeats)) for name, (prefix, a) in settings.items()}
        finally:
            if burner is not None:
                burner.kill()
                burner.wait()
        best = min(times.values())
        for name, seconds in times.items():
            print(json.dumps({"load": load, "setting": name, "seconds": round(seconds, 2), "vs_best": round(seconds / best, 2),
                              "lines": args.lines, "n": args.n, "cpus": os.cpu_count()}), flush=True)


if __name__ == "__main__":
    main()
