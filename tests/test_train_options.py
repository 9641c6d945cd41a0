"""Training options that promise behaviour: --seed, --max-minutes, the --eval-every BLEU probe, and a
real Ctrl-C of `diffuseq train` (docs/training-cli.md)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from diffuseq_cli.api import DiffuSeq
from diffuseq_cli.cli import main
from diffuseq_cli.evaluation.metrics import same_words
from diffuseq_cli.modelfiles.folder import load_model_folder
from diffuseq_cli.modelfiles.run_folder import latest_checkpoint, load_train_state, read_metrics
from diffuseq_cli.modelfiles.tasks import EMBEDDED_MODELS
from diffuseq_cli.training.data import read_pairs
from diffuseq_cli.training.config import with_recipe
from diffuseq_cli.training.probe import PROBE_SEED, bleu_probe
from diffuseq_cli.training.run import train

from helpers_processes import as_from_a_terminal
from paths import QQP_VALID, ROOT, needs_shared


def train_tiny(out: Path, tokenizer_file: str, progress=None, resume: bool = False, **settings):
    """Train a few steps of the tiny preset on QQP valid (T = 50, 32 positions, batch 8)."""
    values = dict(data=str(QQP_VALID), out=str(out), tokenizer=tokenizer_file, preset="tiny", diffusion_steps=50,
                  seq_len=32, batch_size=8, steps=3, warmup=1, save_every=1000, log_every=1)
    return train(with_recipe("fast", **{**values, **settings}), progress=progress, resume=resume)


def weights(run) -> dict:
    state = load_train_state(latest_checkpoint(run))
    return {**state["model"], **{f"ema.{i}": e for i, e in enumerate(state["ema"])}}


def same(a: dict, b: dict) -> bool:
    assert a.keys() == b.keys()
    return all(torch.equal(a[k], b[k]) for k in a)


# --- --seed ------------------------------------------------------------------------------------------
def _cli_train(capsys, out: Path, tokenizer_file: str, *extra: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(["train", str(QQP_VALID), "--out", str(out), "--tokenizer", tokenizer_file, "--preset", "tiny",
              "--diffusion-steps", "50", "--seq-len", "32", "-b", "8", "--steps", "2", "--warmup", "1", "-q", *extra])
    out_text, err = capsys.readouterr()
    return info.value.code or 0, out_text, err


def test_the_same_seed_gives_the_same_run_and_another_seed_another(tmp_path, tokenizer_file, capsys):
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        code, _, err = _cli_train(capsys, tmp_path / name, tokenizer_file, "--seed", seed)
        assert code == 0, err
    assert same(weights(tmp_path / "a"), weights(tmp_path / "b"))
    assert not same(weights(tmp_path / "a"), weights(tmp_path / "c"))
    logged = {name: [r["loss"] for r in read_metrics(tmp_path / name) if "loss" in r] for name in "abc"}
    assert logged["a"] == logged["b"] and logged["a"] != logged["c"]


# --- --max-minutes -------------------------------------------------------------------------------------
def test_max_minutes_stops_saves_and_the_run_resumes_to_the_uninterrupted_weights(tmp_path, tokenizer_file):
    events = []
    # a budget of 6 ms: past it after the first step, whatever the machine
    stopped = train_tiny(tmp_path / "cut", tokenizer_file, events.append, steps=4, max_minutes=1e-4)
    assert stopped.step == 1 and stopped.last_checkpoint.name == "step_00000001"
    assert latest_checkpoint(tmp_path / "cut") == stopped.last_checkpoint  # complete, the run's latest
    assert [e["event"] for e in events if e["event"] in ("save", "done", "stopped")] == ["save", "done"]
    resumed = train_tiny(tmp_path / "cut", tokenizer_file, resume=True, steps=4)
    assert resumed.step == 4
    whole = train_tiny(tmp_path / "whole", tokenizer_file, steps=4)
    assert same(weights(tmp_path / "cut"), weights(whole.run))


def test_cli_max_minutes_prints_the_checkpoint_it_saved(tmp_path, tokenizer_file, capsys):
    code, out, err = _cli_train(capsys, tmp_path / "run", tokenizer_file, "--max-minutes", "0.0001", "--steps", "50")
    assert code == 0, err
    assert out.strip() == str(tmp_path / "run" / "checkpoints" / "step_00000001")


# --- the --eval-every probe ------------------------------------------------------------------------------
def _nltk_bleu(hyp: str, ref: str) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sentence_bleu([ref.strip().split()], hyp.strip().split(), smoothing_function=SmoothingFunction().method4)


@needs_shared
def test_probe_scores_what_generate_writes_as_nltk_does():
    """The probe against an independent computation: the API's seed-0 samples scored by NLTK."""
    loaded = load_model_folder(EMBEDDED_MODELS / "paraphrase")
    lines, steps = 12, 5
    probe = bleu_probe(loaded, QQP_VALID, lines, steps=steps)
    pairs = list(itertools.islice(read_pairs(QQP_VALID), lines))
    hyps = [c[0] for c in DiffuSeq(loaded).generate([s for s, _, _ in pairs], steps=steps, seed=PROBE_SEED)]
    bleu = sum(_nltk_bleu(h, t) for h, (_, t, _) in zip(hyps, pairs)) / lines
    copy_bleu = sum(_nltk_bleu(s, t) for s, t, _ in pairs) / lines
    assert probe["valid_bleu"] == round(bleu, 5) and probe["valid_bleu"] > 0  # a real model: not all zeros
    assert probe["copy_source_bleu"] == round(copy_bleu, 5) and probe["copy_source_bleu"] > 0
    assert probe["copy_share"] == round(sum(same_words(h, s) for h, (s, _, _) in zip(hyps, pairs)) / lines, 4)
    assert probe["sample"] == hyps[0]


def test_eval_every_logs_the_probe_of_the_weights_it_saves(tmp_path, tokenizer_file):
    """The record at step 2 is the probe of the EMA weights that the step-2 checkpoint holds."""
    result = train_tiny(tmp_path / "run", tokenizer_file, steps=2, save_every=2, eval_bleu_every=2,
                             eval_lines=6, eval_sample_steps=4, valid=str(QQP_VALID))
    records = [r for r in read_metrics(result.run) if "valid_bleu" in r]
    assert [r["step"] for r in records] == [2]
    again = bleu_probe(load_model_folder(result.last_checkpoint), QQP_VALID, 6, steps=4)
    assert {k: records[0][k] for k in again} == again
    pairs = list(itertools.islice(read_pairs(QQP_VALID), 6))
    assert records[0]["copy_source_bleu"] == round(sum(_nltk_bleu(s, t) for s, t, _ in pairs) / 6, 5) > 0


# --- a real interrupt -------------------------------------------------------------------------------------
def test_ctrl_c_stops_train_with_one_line_and_the_run_resumes(tmp_path, tokenizer_file):
    run = tmp_path / "run"
    options = [str(QQP_VALID), "--out", str(run), "--tokenizer", tokenizer_file, "--preset", "tiny",
               "--diffusion-steps", "50", "--seq-len", "32", "-b", "8", "--steps", "100000", "--save-every", "2",
               "--log-every", "1000"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "diffuseq_cli", "train", *options], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=as_from_a_terminal)
    try:
        deadline = time.monotonic() + 120
        while latest_checkpoint(run) is None:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err  # the shell's code for SIGINT
    assert out == "" and "Traceback" not in err
    last = latest_checkpoint(run)
    stopped = [line for line in err.splitlines() if line.startswith("stopped at step")]
    assert stopped == [err.splitlines()[-1]]  # one line, the last: where the run is and how to go on
    assert f"the last complete checkpoint is {last}" in stopped[0]
    assert f"continue with: diffuseq train {QQP_VALID} --out {run} --resume" in stopped[0]
    saved = load_train_state(last)["step"]
    steps = [o if o != "100000" else str(saved + 2) for o in options]
    with pytest.raises(SystemExit) as info:
        main(["train", *steps, "--resume", "-q"])
    assert (info.value.code or 0) == 0
    assert load_train_state(latest_checkpoint(run))["step"] == saved + 2
