"""A `.pt` file whose pickle would run code is refused unread (docs/models.md: `.pt` files are only
read with `torch.load(weights_only=True)`): an official checkpoint given to `convert` or `generate`,
and a training run's `train_state.pt` given to `train --resume`. The payload would create a file;
the tests check that it never does and that the refusal is one clean line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffuseq_cli.errors import DiffuseqError
from diffuseq_cli.modelfiles.official import load_official_state
from diffuseq_cli.modelfiles.run_folder import STATE, latest_checkpoint, load_train_state

from paths import OFFICIAL_TINY, QQP_VALID

ENV = dict(os.environ, OMP_NUM_THREADS="1")


class Payload:
    """Unpickled, this runs ``touch MARKER``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def plant(path: Path, marker: Path, state: dict) -> Path:
    """``state`` saved by torch.save with the payload beside the tensors."""
    torch.save({**state, "extra": Payload(marker)}, path)
    return path


def test_the_payload_would_run_if_unpickled(tmp_path):
    """The premise: this file is dangerous to a plain ``torch.load``."""
    marker = tmp_path / "ran"
    evil = plant(tmp_path / "evil.pt", marker, {"w": torch.zeros(2)})
    torch.load(evil, weights_only=False)
    assert marker.exists()


def diffuseq(*args):
    return subprocess.run([sys.executable, "-m", "diffuseq_cli", *map(str, args)], capture_output=True, text=True,
                          env=ENV, stdin=subprocess.DEVNULL, timeout=300)


def assert_refused(r, marker: Path):
    assert r.returncode == 1, r.stderr
    assert "holds objects other than tensors, which are never unpickled" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "weights_only" not in r.stderr  # torch's advice to load unsafely is not passed on
    assert not marker.exists()


@pytest.fixture
def official_evil(shared_data, tmp_path):
    marker = tmp_path / "ran"
    state = load_official_state(OFFICIAL_TINY / "ema_0.9999_000100.pt")
    return plant(tmp_path / "ema_0.9999_000100.pt", marker, dict(state)), marker


def test_library_refuses_an_official_checkpoint_with_a_payload(official_evil):
    evil, marker = official_evil
    with pytest.raises(DiffuseqError, match="holds objects other than tensors"):
        load_official_state(evil)
    assert not marker.exists()


def test_convert_and_generate_refuse_it(official_evil, tmp_path):
    evil, marker = official_evil
    vocab = OFFICIAL_TINY / "vocab.txt"
    assert_refused(diffuseq("convert", evil, "--tokenizer", vocab, "--heads", "4", "-o", tmp_path / "out"), marker)
    assert not (tmp_path / "out").exists()
    src = tmp_path / "in.txt"
    src.write_text("w1 w2\n")
    assert_refused(diffuseq("generate", "-m", evil, "--tokenizer", vocab, "--heads", "4", "-i", src, "--steps", "2"),
                   marker)


def test_train_resume_refuses_a_train_state_with_a_payload(tmp_path, tokenizer_file):
    run = tmp_path / "run"
    options = [QQP_VALID, "--out", run, "--tokenizer", tokenizer_file, "--preset", "tiny", "--diffusion-steps", "50",
               "--seq-len", "32", "-b", "8", "--steps", "1", "-q"]
    assert diffuseq("train", *options).returncode == 0
    ckpt = latest_checkpoint(run)
    marker = tmp_path / "ran"
    plant(ckpt / STATE, marker, load_train_state(ckpt))
    with pytest.raises(DiffuseqError, match="holds objects other than tensors"):
        load_train_state(ckpt)
    r = diffuseq("train", *options[:-3], "--steps", "2", "--resume", "-q")
    assert_refused(r, marker)
    assert str(ckpt / STATE) in r.stderr
