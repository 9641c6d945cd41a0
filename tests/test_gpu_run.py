"""The GPU run's CPU rehearsal (issue 14): every stage of bench/gpu_run.py on tiny settings, so that
the run a lent GPU gets cannot fail on a typo or a missing file."""

import json
import os
import subprocess
import sys

import pytest

from diffuseq_cli.modelfiles.folder import load_model_folder

from paths import ROOT, needs_shared

pytestmark = pytest.mark.slow


@needs_shared
def test_rehearsal_runs_every_stage_on_cpu(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", TMPDIR=str(tmp_path))
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_run.py"), "--device", "cpu", "--tiny",
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=600)
    figures = json.loads((tmp_path / "out" / "figures.json").read_text())
    stages = figures["stages"]
    assert r.returncode == 0, (r.stderr[-2000:], {k: v.get("error") for k, v in stages.items()})
    assert set(stages) == {"env", "train", "score", "cuda_tests", "throughput"}
    assert all(s["status"] == "ok" for s in stages.values())
    assert stages["throughput"]["generation"][0]["lines_per_s"] > 0
    assert stages["throughput"]["training"][0]["tokens_per_s"] > 0
    train = stages["train"]
    assert train["steps"] == 20
    score = stages["score"]
    for name, lines in (("qqp_valid", 16), ("mrpc_valid", 16)):
        for model in ("trained", "started_from"):
            assert score[name][model]["lines"] == lines and len(score[name][model]["examples"]) == 10
    # The embedded model scored through the same code: a tiny model trained 20 steps is far below it.
    assert score["qqp_valid"]["started_from"]["bleu"] > score["qqp_valid"]["trained"]["bleu"] + 0.05
    files = train["model_files"]
    assert len(files) <= 8 and max(files.values()) <= 16 * 2**20
    loaded = load_model_folder(tmp_path / "out" / "model")
    assert loaded.config.model.length_head and loaded.config.diffusion.absorbing_kind == "v2"
