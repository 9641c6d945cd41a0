"""Resume: a run killed with SIGKILL and resumed ends with the weights of an uninterrupted run; the data
position, RNG and schedules come back; a checkpoint cut off in the middle of a write is never the latest."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from diffuseq_cli.cli import main
from diffuseq_cli.modelfiles import run_folder
from diffuseq_cli.modelfiles.run_folder import complete_checkpoints, latest_checkpoint, load_train_state, read_metrics
from diffuseq_cli.training.config import with_recipe
from diffuseq_cli.training.run import train

ROOT = Path(__file__).resolve().parents[1]
from paths import QQP_VALID


def tiny(out, tokenizer_file, **kw):
    values = dict(data=str(QQP_VALID), out=str(out), tokenizer=tokenizer_file, preset="tiny", diffusion_steps=100,
                  seq_len=32, batch_size=8, steps=10, warmup=5, save_every=1000, log_every=1)
    values.update(kw)
    return with_recipe("fast", **values)


def assert_same_weights(run_a, run_b, tol=1e-6):
    a, b = load_train_state(latest_checkpoint(run_a)), load_train_state(latest_checkpoint(run_b))
    assert a["step"] == b["step"]
    assert a["model"].keys() == b["model"].keys() and len(a["ema"]) == len(b["ema"]) > 0  # before any zip
    for k in a["model"]:
        assert float((a["model"][k] - b["model"][k]).abs().max()) <= tol, k
    for x, y in zip(a["ema"], b["ema"], strict=True):
        assert float((x - y).abs().max()) <= tol
    assert torch.equal(a["sampler"]["counts"], b["sampler"]["counts"])
    assert (a["epoch"], a["batch_pos"]) == (b["epoch"], b["batch_pos"])


def assert_clean_metrics(run, steps):
    logged = [r["step"] for r in read_metrics(run) if "loss" in r]
    assert logged == list(range(1, steps + 1))  # no step twice: the dead run's extra records were dropped


@pytest.mark.slow
def test_sigkill_in_the_middle_then_resume_matches_an_uninterrupted_run(tmp_path, tokenizer_file, capsys):
    steps = 120
    run = tmp_path / "killed"
    options = [str(QQP_VALID), "--out", str(run), "--tokenizer", tokenizer_file, "--preset", "tiny",
               "--diffusion-steps", "100", "--seq-len", "32", "-b", "8", "--steps", str(steps), "--warmup", "5",
               "--save-every", "10", "--log-every", "1", "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "diffuseq_cli", "train", *options], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while latest_checkpoint(run) is None:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    killed_at = load_train_state(latest_checkpoint(run))["step"]
    assert 10 <= killed_at < steps

    with pytest.raises(SystemExit) as info:
        main(["train", *options, "--resume"])
    out, err = capsys.readouterr()
    assert info.value.code == 0, err
    assert out.strip() == str(run / "checkpoints" / f"step_{steps:08d}")

    whole = tmp_path / "whole"
    train(tiny(whole, tokenizer_file, steps=steps, save_every=10))
    assert_same_weights(run, whole)
    assert_clean_metrics(run, steps)


def test_interrupted_and_resumed_across_epochs_matches_an_uninterrupted_run(tmp_path, tokenizer_file):
    small = tmp_path / "small.jsonl"
    small.write_bytes(b"".join(QQP_VALID.read_bytes().splitlines(keepends=True)[:40]))  # 5 batches an epoch
    kw = dict(data=str(small), steps=14, save_every=3)

    class Stop(Exception):
        pass

    def stop_at_11(event):
        if event["event"] == "step" and event["step"] == 11:
            raise Stop

    with pytest.raises(Stop):
        train(tiny(tmp_path / "a", tokenizer_file, **kw), progress=stop_at_11)
    state = load_train_state(latest_checkpoint(tmp_path / "a"))
    assert (state["step"], state["epoch"], state["batch_pos"]) == (9, 1, 4)  # mid-epoch data position
    events = []
    result = train(tiny(tmp_path / "a", tokenizer_file, **kw), progress=events.append, resume=True)
    assert result.step == 14
    assert events[0]["resumed_from"].endswith("step_00000009") and events[0]["step"] == 9
    train(tiny(tmp_path / "b", tokenizer_file, **kw))
    assert_same_weights(tmp_path / "a", tmp_path / "b", tol=0.0)
    assert_clean_metrics(tmp_path / "a", 14)
    # resuming a finished run does nothing and returns its last checkpoint
    again = train(tiny(tmp_path / "a", tokenizer_file, **kw), resume=True)
    assert again.step == 14 and again.last_checkpoint.name == "step_00000014"


def test_a_checkpoint_cut_off_mid_write_is_never_the_latest(tmp_path, tokenizer_file):
    run = tmp_path / "run"
    train(tiny(run, tokenizer_file, steps=4, save_every=2))
    ckpts = run / "checkpoints"
    good = ckpts / "step_00000004"
    assert latest_checkpoint(run) == good
    shutil.copytree(good, ckpts / "step_00000006")
    (ckpts / "step_00000006" / ".complete").unlink()  # no marker
    shutil.copytree(good, ckpts / "step_00000008")
    (ckpts / "step_00000008" / "train_state.pt").unlink()  # marker, but no train state
    shutil.copytree(good, ckpts / "step_00000009")
    (ckpts / "step_00000009" / "model.safetensors").unlink()  # marker, but no weights
    shutil.copytree(good, ckpts / ".step_00000010.tmp-12345")  # a write in progress, whole inside
    (ckpts / "step_banana").mkdir()
    assert latest_checkpoint(run) == good
    assert [p.name for p in complete_checkpoints(run)] == ["step_00000002", "step_00000004"]

    events = []
    train(tiny(run, tokenizer_file, steps=6, save_every=2), progress=events.append, resume=True)
    assert events[0]["resumed_from"].endswith("step_00000004")
    assert latest_checkpoint(run) == ckpts / "step_00000006"
    assert (ckpts / "step_00000006" / ".complete").exists()
    assert (run / "latest").resolve() == (ckpts / "step_00000006").resolve()
    assert not (ckpts / ".step_00000010.tmp-12345").exists()  # stale writes are cleared on start


def test_a_failed_write_leaves_the_previous_checkpoint_as_latest(tmp_path, tokenizer_file, monkeypatch):
    run = tmp_path / "run"
    original = run_folder.torch.save
    calls = {"n": 0}

    def failing_save(obj, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            Path(path).write_bytes(b"half a file")
            raise OSError("No space left on device")
        return original(obj, path, *args, **kwargs)

    monkeypatch.setattr(run_folder.torch, "save", failing_save)
    with pytest.raises(OSError, match="No space"):
        train(tiny(run, tokenizer_file, steps=4, save_every=2))
    assert latest_checkpoint(run).name == "step_00000002"
    assert (run / "latest").resolve().name == "step_00000002"
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step_00000002"]


def test_old_checkpoints_are_pruned_to_keep(tmp_path, tokenizer_file):
    run = tmp_path / "run"
    train(tiny(run, tokenizer_file, steps=8, save_every=2, keep=2))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000006", "step_00000008"]
