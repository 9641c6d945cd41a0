"""The GPU run's CPU rehearsal (issue 14): every stage of bench/gpu_run.py on tiny settings, so that
the run a lent GPU gets cannot fail on a typo or a missing file."""

import json
import os
import subprocess
import sys

import pytest

from diffuseq_cli.checkpoint import load_model_folder

from paths import ROOT

pytestmark = pytest.mark.slow


def test_rehearsal_runs_every_stage_on_cpu(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", TMPDIR=str(tmp_path))
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_run.py"), "--device", "cpu", "--tiny",
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=600)
    figures = json.loads((tmp_path / "out" / "figures.json").read_text())
    stages = figures["stages"]
    assert r.returncode == 0, (r.stderr[-2000:], {k: v.get("error") for k, v in stages.items()})
    assert set(stages) == {"env", "cuda_tests", "throughput", "train"}
    assert all(s["status"] == "ok" for s in stages.values())
    assert stages["throughput"]["generation"][0]["lines_per_s"] > 0
    assert stages["throughput"]["training"][0]["tokens_per_s"] > 0
    train = stages["train"]
    assert train["steps"] == 20 and train["lines"] == 16 and 0 <= train["mbr10"]["bleu"] <= 1
    files = train["model_files"]
    assert len(files) <= 8 and max(files.values()) <= 16 * 2**20
    loaded = load_model_folder(tmp_path / "out" / "model")
    assert loaded.config.model.length_head and loaded.config.diffusion.absorbing_kind == "v2"
