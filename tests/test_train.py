"""`diffuseq train` on one process: it learns, its checkpoint generates, accumulation, the NaN guard,
the lr schedule and EMA, --config and the resolved config, option errors, and the progress display."""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from diffuseq_cli.api import DiffuSeq
from diffuseq_cli.cli import main
from diffuseq_cli.commands import display
from diffuseq_cli.commands import train_progress as progress_mod
from diffuseq_cli.commands.train import parse_gpus
from diffuseq_cli.core.diffusion import Diffusion
from diffuseq_cli.errors import UsageError
from diffuseq_cli.modelfiles.folder import load_model_folder
from diffuseq_cli.modelfiles.run_folder import latest_checkpoint, load_train_state, read_metrics
from diffuseq_cli.training.config import read_run_config, resolve_config, with_recipe
from diffuseq_cli.training.distributed import Placement
from diffuseq_cli.training.run import Trainer, TrainingDiverged, prepare_run, train

from paths import QQP_VALID, needs_shared


def tiny(tmp_path, tokenizer_file, name="run", **kw):
    values = dict(data=str(QQP_VALID), out=str(tmp_path / name), tokenizer=tokenizer_file, preset="tiny",
                  diffusion_steps=100, seq_len=32, batch_size=16, steps=4, warmup=2, save_every=1000, log_every=1)
    values.update(kw)
    return with_recipe("fast", **values)


def params_of(run: Path) -> tuple[dict, list]:
    state = load_train_state(latest_checkpoint(run))
    return state["model"], state["ema"]


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


# --- it learns, and its checkpoint is a model folder that generates ------------------------------------
@pytest.mark.slow
def test_tiny_model_learns_and_its_checkpoint_generates(tmp_path, tokenizer_file):
    cfg = tiny(tmp_path, tokenizer_file, seq_len=48, batch_size=32, steps=200, warmup=20, lr=2e-3, log_every=20,
               save_every=100, valid=str(QQP_VALID), valid_every=100)
    result = train(cfg)
    assert result.step == 200 and result.last_checkpoint.name == "step_00000200"
    records = read_metrics(cfg.out)
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 10
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.85 * first, losses
    valid = [r["valid_loss"] for r in records if "valid_loss" in r]
    assert len(valid) == 2 and valid[1] < valid[0]

    latest = Path(cfg.out) / "latest"
    assert latest.resolve() == result.last_checkpoint.resolve()
    loaded = load_model_folder(latest)
    assert loaded.config.model.num_layers == 2 and loaded.config.diffusion.steps == 100
    out = DiffuSeq(loaded).generate(["how do i learn python?", "what is the best phone?"], num_samples=2, steps=20)
    assert len(out) == 2 and all(len(c) == 2 for c in out)
    # text, though a 200-step tiny model may end a candidate at once (an empty target is valid output)
    assert all(isinstance(s, str) for c in out for s in c) and sum(bool(s.strip()) for c in out for s in c) >= 2


# --- gradient accumulation ------------------------------------------------------------------------------
def test_microbatches_give_the_same_update_as_the_whole_batch(tmp_path, tokenizer_file):
    whole = train(tiny(tmp_path, tokenizer_file, "whole", steps=3))
    micro = train(tiny(tmp_path, tokenizer_file, "micro", steps=3, microbatch=4))
    (m1, e1), (m2, e2) = params_of(whole.run), params_of(micro.run)
    assert max_diff(m1, m2) < 1e-5
    assert max(float((a - b).abs().max()) for a, b in zip(e1, e2, strict=True)) < 1e-5
    start = params_of(train(tiny(tmp_path, tokenizer_file, "one", steps=1)).run)[0]
    assert max_diff(m1, start) > 1e-4  # the comparison is not vacuous: weights moved


# --- the NaN guard ----------------------------------------------------------------------------------
def _nan_from_call(monkeypatch, call: int):
    original = Diffusion.training_losses
    calls = {"n": 0}

    def patched(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] >= call:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(Diffusion, "training_losses", patched)


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, tokenizer_file, monkeypatch):
    _nan_from_call(monkeypatch, 6)  # steps 1-5 fine, step 6 NaN
    cfg = tiny(tmp_path, tokenizer_file, steps=10, save_every=2)
    events = []
    with pytest.raises(TrainingDiverged, match="step 6"):
        train(cfg, progress=events.append)
    latest = latest_checkpoint(cfg.out)
    assert latest.name == "step_00000004"
    assert (Path(cfg.out) / "latest").resolve() == latest.resolve()
    model, ema = params_of(Path(cfg.out))
    assert all(torch.isfinite(v).all() for v in model.values())
    assert events[-1]["event"] == "stopped"


def test_absurd_learning_rate_is_caught(tmp_path, tokenizer_file):
    cfg = tiny(tmp_path, tokenizer_file, steps=30, save_every=1, lr=1e30, warmup=0, grad_clip=0.0)
    with pytest.raises(TrainingDiverged):
        train(cfg)
    model, _ = params_of(Path(cfg.out))
    assert all(torch.isfinite(v).all() for v in model.values())


def test_cli_divergence_is_exit_1_and_one_line(tmp_path, tokenizer_file, monkeypatch, capsys):
    _nan_from_call(monkeypatch, 3)
    code, out, err = _cli(capsys, str(QQP_VALID), "--out", str(tmp_path / "run"), "--tokenizer", tokenizer_file,
                          "--preset", "tiny", "--diffusion-steps", "50", "--seq-len", "32", "-b", "8", "--steps", "5",
                          "--save-every", "2")
    assert code == 1 and out == ""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "diverged" in errors[0] and "Traceback" not in err
    assert latest_checkpoint(tmp_path / "run").name == "step_00000002"


# --- schedule and EMA -----------------------------------------------------------------------------
def _trainer(tmp_path, tokenizer_file, **kw) -> Trainer:
    cfg, tok = prepare_run(tiny(tmp_path, tokenizer_file, **kw), resume=False)
    return Trainer(cfg, tok, Placement(0, 1, torch.device("cpu")), None)


def test_lr_warms_up_then_decays_linearly_to_zero(tmp_path, tokenizer_file):
    tr = _trainer(tmp_path, tokenizer_file, steps=10, warmup=4, lr=1e-3)
    lrs = []
    for _ in range(10):
        lrs.append(tr.opt.param_groups[0]["lr"])
        tr.train_step()
    expected = [1e-3 * f for f in (0.25, 0.5, 0.75, 1.0, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6)]
    assert lrs == pytest.approx(expected)
    assert tr.opt.param_groups[0]["lr"] == 0.0
    paper = _trainer(tmp_path / "p", tokenizer_file, steps=4, warmup=0, lr=1e-4)
    assert [paper._lr_factor(s) for s in range(4)] == pytest.approx([1, 0.75, 0.5, 0.25])


def test_ema_follows_its_formula(tmp_path, tokenizer_file):
    tr = _trainer(tmp_path, tokenizer_file, ema=0.9, ema_warmup=False)
    before = [e.clone() for e in tr.ema]
    tr.train_step()
    after = [p.detach() for p in tr.model.parameters()]
    for e, b, p in zip(tr.ema, before, after):
        assert torch.allclose(e, 0.9 * b + 0.1 * p, atol=1e-7)
    warm = _trainer(tmp_path / "w", tokenizer_file, ema=0.9999, ema_warmup=True)
    warm.train_step()  # the first update's rate is min(0.9999, 1/10)
    for e, p, b in zip(warm.ema, warm.model.parameters(), before):
        assert torch.allclose(e, 0.1 * b + 0.9 * p.detach(), atol=1e-6)
    names = [n for n, _ in tr.model.named_parameters()]
    saved = tr.ema_state()
    assert all(torch.equal(saved[n], e) for n, e in zip(names, tr.ema))


# --- --config, the resolved config, option errors -------------------------------------------------------
def _cli(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main(["train", *map(str, args)])
    out, err = capsys.readouterr()
    return info.value.code or 0, out, err


def test_config_file_overrides_and_the_resolved_config_is_written(tmp_path, tokenizer_file, capsys):
    conf = tmp_path / "model.json"
    conf.write_text(json.dumps({"num_layers": 1, "hidden_size": 32, "num_heads": 2, "ffn_size": 64,
                                "train": {"lr": 0.002, "warmup": 1, "log_every": 2}}))
    run = tmp_path / "run"
    code, out, err = _cli(capsys, QQP_VALID, "--out", run, "--tokenizer", tokenizer_file, "--preset", "tiny",
                          "--config", conf, "--diffusion-steps", "50", "--seq-len", "32", "-b", "8", "--steps", "2",
                          "--warmup", "0", "-q")
    assert code == 0, err
    assert out.strip() == str(run / "checkpoints" / "step_00000002")
    saved = json.loads((run / "config.json").read_text())
    assert saved["model_overrides"] == {"num_layers": 1, "hidden_size": 32, "num_heads": 2, "ffn_size": 64}
    assert saved["lr"] == 0.002 and saved["log_every"] == 2  # from the file
    assert saved["warmup"] == 0  # the explicit option beats the file
    assert saved["resolved_model"]["num_layers"] == 1 and saved["resolved_model"]["hidden_size"] == 32
    assert saved["resolved_model"]["embed_dim"] == 16 and saved["resolved_model"]["vocab_size"] == 500
    assert read_run_config(run).model_overrides["num_layers"] == 1
    folder = json.loads((run / "latest" / "config.json").read_text())
    assert folder["model"]["num_layers"] == 1 and folder["model"]["hidden_size"] == 32


@pytest.mark.parametrize(
    "content, words",
    [
        ({"num_layerz": 1}, "unknown model field(s) num_layerz"),
        ({"vocab_size": 10}, "--vocab-size"),
        ({"hidden_size": 30, "num_heads": 4}, "not divisible"),
        ({"train": {"stepz": 3}}, "stepz"),
        ("[1, 2]", "expected a JSON object"),
        ("{not json", "invalid JSON"),
    ],
)
def test_bad_config_files_are_usage_errors(tmp_path, tokenizer_file, capsys, content, words):
    conf = tmp_path / "bad.json"
    conf.write_text(content if isinstance(content, str) else json.dumps(content))
    code, out, err = _cli(capsys, QQP_VALID, "--out", tmp_path / "run", "--tokenizer", tokenizer_file,
                          "--preset", "tiny", "--config", conf, "--steps", "1", "-q")
    assert code == 2 and words in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_gpus_parsing():
    assert parse_gpus("0,2") == (0, 2)
    assert parse_gpus("2") == (0, 1)
    assert parse_gpus("3,") == (3,)
    assert parse_gpus("0") == ()
    assert parse_gpus(None) is None
    for bad in ("two", "0,x", "-1", "1,1"):
        with pytest.raises(UsageError):
            parse_gpus(bad)


@pytest.mark.parametrize(
    "args, words",
    [
        (["-b", "10", "--nproc", "3"], "not divisible by the 3 processes"),
        (["--gpus", "0,2"] if not torch.cuda.is_available() else ["--gpus", "0,99"], "GPU"),
        (["--gpus", "abc"], "--gpus"),
        (["--preset", "huge"], "unknown preset"),
        (["--microbatch", "0"], "--microbatch"),
        (["--precision", "fp8"], "--precision"),
    ],
)
def test_option_errors_exit_2(tmp_path, tokenizer_file, capsys, args, words):
    code, out, err = _cli(capsys, QQP_VALID, "--out", tmp_path / "run", "--tokenizer", tokenizer_file, "-q", *args)
    assert code == 2, err
    assert words in err and "Traceback" not in err


def test_fresh_run_into_a_used_folder_and_resume_changes(tmp_path, tokenizer_file, capsys):
    cfg = tiny(tmp_path, tokenizer_file, steps=2)
    train(cfg)
    base = [QQP_VALID, "--out", cfg.out, "--tokenizer", tokenizer_file, "--preset", "tiny", "-q"]
    code, _, err = _cli(capsys, *base)
    assert code == 2 and "--resume" in err
    code, _, err = _cli(capsys, *base, "--resume", "--lr", "0.5")
    assert code == 2 and "cannot change --lr" in err
    # a resume keeps the saved settings; --steps may change
    resumed = resolve_config({"data": str(QQP_VALID), "out": cfg.out, "steps": 3}, resume=True)
    assert resumed.steps == 3 and resumed.batch_size == 16 and resumed.seq_len == 32 and resumed.diffusion_steps == 100


# --- the run's cache --------------------------------------------------------------------------------
@needs_shared
def test_a_second_start_reuses_the_cached_tokenizer_and_tokenized_data(tmp_path, monkeypatch):
    small = tmp_path / "small.jsonl"
    small.write_bytes(b"".join(QQP_VALID.read_bytes().splitlines(keepends=True)[:300]))
    cfg = with_recipe("fast", data=str(small), out=str(tmp_path / "run"), vocab_size=300, preset="tiny",
                      diffusion_steps=50, seq_len=32, batch_size=8, steps=2, warmup=0)
    train(cfg)
    cache = sorted(p.name for p in (tmp_path / "run" / "cache").iterdir())
    assert len(cache) == 2 and cache[0].startswith("bpe-") and cache[1].startswith("small-")
    import diffuseq_cli.training.data as data_mod
    import diffuseq_cli.training.run as train_mod

    def fail(*args, **kwargs):
        raise AssertionError("recomputed instead of using the cache")

    monkeypatch.setattr(data_mod, "tokenize_file", fail)
    monkeypatch.setattr(train_mod, "train_bpe", fail)
    assert train(dataclasses.replace(cfg, steps=3), resume=True).step == 3  # a resume
    shutil.rmtree(tmp_path / "run" / "checkpoints")
    assert train(cfg).step == 2  # a new attempt in the same folder
    monkeypatch.undo()
    with open(small, "a") as f:  # changed data: a new key, tokenized again
        f.write('{"src": "a new line", "trg": "of data"}\n')
    shutil.rmtree(tmp_path / "run" / "checkpoints")
    train(cfg)
    assert len(list((tmp_path / "run" / "cache").iterdir())) == 4


# --- the progress display ----------------------------------------------------------------------------
START = {"event": "start", "step": 0, "steps": 20, "parameters": 1234, "examples": 99, "truncated": 3,
         "truncated_lines": [4], "seq_len": 32, "precision": "fp32", "world_size": 1, "device": "cpu",
         "batch_size": 8, "resumed_from": None}
LOG = {"event": "log", "steps": 20, "step": 10, "loss": 1.2345, "lr": 1e-3, "grad_norm": 0.5, "samples_per_s": 40.0,
       "tokens_per_s": 900.0, "elapsed_s": 2.0, "eta_s": 2.0}
EVENTS = [START, {"event": "warning", "message": "3 of 99 pairs are longer"}, {"event": "step", "step": 1, "steps": 20},
          LOG, {"event": "save", "step": 10, "path": "run/checkpoints/step_00000010"},
          {"event": "done", "step": 20, "seconds": 4.0, "path": None}]


def _render(monkeypatch, quiet: bool, terminal: bool) -> str:
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=terminal, width=160, highlight=False, color_system=None)
    monkeypatch.setattr(display, "console", lambda: console)
    monkeypatch.setattr(display, "on_terminal", lambda quiet=False: terminal and not quiet)
    reporter = functools.partial(progress_mod.training_reporter, quiet)
    for event in EVENTS:
        reporter(event)
    assert progress_mod._live is None  # stopped on "done"
    return buffer.getvalue()


def test_plain_progress_lines_when_not_a_terminal(monkeypatch):
    text = _render(monkeypatch, quiet=False, terminal=False)
    lines = text.splitlines()
    assert lines[0].startswith("training 1,234 parameters on 99 examples")
    assert "warning: 3 of 99 pairs are longer" in text
    assert "step 10/20 · loss 1.2345 · lr 1.00e-03 · 40.0 samples/s · ETA 0:02" in lines
    assert "saved run/checkpoints/step_00000010" in lines and lines[-1].startswith("done: step 20")
    assert "\x1b" not in text


def test_live_display_on_a_terminal(monkeypatch):
    text = _render(monkeypatch, quiet=False, terminal=True)
    assert "step 10/20" in text and "loss 1.2345" in text and "lr 1.00e-03" in text
    assert "40.0 samples/s" in text and "ETA 0:02" in text
    assert "saved run/checkpoints/step_00000010" in text


def test_quiet_shows_only_warnings(monkeypatch):
    text = _render(monkeypatch, quiet=True, terminal=True)
    assert text.strip() == "warning: 3 of 99 pairs are longer"


def test_an_unpicklable_progress_callback_is_refused_before_spawning(tmp_path, tokenizer_file):
    with pytest.raises(UsageError, match="picklable|module-level"):
        train(tiny(tmp_path, tokenizer_file, nproc=2), progress=lambda event: None)


def test_truncation_is_reported_in_the_start_event_and_the_cli(tmp_path, tokenizer_file, capsys):
    events = []
    train(tiny(tmp_path, tokenizer_file, steps=1), progress=events.append)
    start = next(e for e in events if e["event"] == "start")
    assert start["truncated"] > 100 and len(start["truncated_lines"]) == 5
    warning = next(e for e in events if e["event"] == "warning")
    assert f"{start['truncated']:,} of 2,048 pairs" in warning["message"]
    code, _, err = _cli(capsys, QQP_VALID, "--out", tmp_path / "cli", "--tokenizer", tokenizer_file, "--preset", "tiny",
                        "--seq-len", "32", "--diffusion-steps", "50", "-b", "8", "--steps", "1", "-q")
    assert code == 0
    lines = ", ".join(map(str, start["truncated_lines"]))
    assert f"warning: {start['truncated']:,} of 2,048 pairs" in err and f"truncated (lines {lines}, ...)" in err
    assert math.isfinite(read_metrics(tmp_path / "cli")[0]["loss"])
