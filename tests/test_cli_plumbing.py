"""The CLI as plumbing: each command maps its flags to the library call, and nothing else.

The library call is replaced by a recorder, so every option is checked without running a model.
"""

import dataclasses

import pytest

from diffuseq_cli.cli import main
from diffuseq_cli.generation.config import SamplingConfig
from diffuseq_cli.training.config import with_recipe


class _Called(Exception):
    """Raised by a recorder: the command got as far as the library call."""


def _record(monkeypatch, module, name):
    seen = {}

    def recorder(*args, **kwargs):
        seen["args"], seen["kwargs"] = args, kwargs
        raise _Called

    monkeypatch.setattr(module, name, recorder)
    return seen


def _call(argv):
    with pytest.raises(_Called):
        main(argv)


@pytest.fixture
def generate_call(monkeypatch):
    from diffuseq_cli.commands import generate_run

    return _record(monkeypatch, generate_run, "run_generate")


def test_generate_defaults_are_the_sampling_configs(generate_call):
    _call(["generate", "-i", "in.txt"])
    assert generate_call["args"] == (SamplingConfig(),)
    kw = generate_call["kwargs"]
    assert (kw["input"], kw["output"], kw["model"], kw["num_samples"], kw["mbr"], kw["fmt"]) == ("in.txt", None, None, 1, False, "text")
    assert kw["choice"] == {"avoid_copy": None, "keep_mood": None, "whole_words": None}
    assert kw["precision"] is None and kw["device"] == "auto"


def test_generate_maps_every_sampling_flag(generate_call):
    _call(["generate", "--steps", "7", "--sampler", "ddpm", "--length", "full", "--lengths", "2", "--rounding", "l2",
           "--strength", "0.5", "--no-remask", "--remask-schedule", "linear", "--no-remask-repeats", "--dedup",
           "--seed", "3", "-b", "5"])
    assert generate_call["args"] == (SamplingConfig(
        steps=7, sampler="ddpm", length="full", lengths=2, rounding="l2", strength=0.5, remask=False,
        remask_schedule="linear", remask_repeats=False, dedup=True, seed=3, batch_size=5),)


def test_generate_maps_the_run_options(generate_call):
    _call(["generate", "-i", "a.txt", "-o", "b.txt", "-m", "folder", "--tokenizer", "vocab.txt", "--heads", "4",
           "-n", "3", "--mbr", "--allow-copy", "--keep-mood", "--any-words", "--mbr-metric", "chrf", "-f", "jsonl", "--input-format", "text",
           "--device", "cpu", "--precision", "bf16", "--resume", "-q"])
    kw = generate_call["kwargs"]
    assert kw == dict(input="a.txt", output="b.txt", model="folder", task=None, tokenizer="vocab.txt", heads=4,
                      num_samples=3, mbr=True, mbr_metric="chrf", choice={"avoid_copy": False, "keep_mood": True, "whole_words": False}, fmt="jsonl", input_format="text",
                      device="cpu", precision="bf16", resume=True, quiet=True, nproc=None, gpus=None)


@pytest.mark.parametrize("argv, expected", [
    (["--nproc", "3"], (3, None)), (["--gpus", "0,2"], (None, (0, 2))), (["--gpus", "2"], (None, (0, 1))),
])
def test_generate_maps_the_process_options(generate_call, argv, expected):
    _call(["generate", "-i", "a.txt", *argv])
    assert (generate_call["kwargs"]["nproc"], generate_call["kwargs"]["gpus"]) == expected


def test_generate_maps_the_dpm_sampler(generate_call):
    _call(["generate", "-i", "a.txt", "--sampler", "dpm++"])
    assert generate_call["args"] == (SamplingConfig(sampler="dpm++"),)


@pytest.mark.parametrize("argv, message", [
    (["--strength", "2"], "--strength must be in (0, 1]"),
    (["--mbr"], "--mbr needs -n 2"),
    (["--resume"], "--resume needs -o FILE"),
    (["--whole-words"], "--whole-words chooses among candidates: it needs --mbr"),
])
def test_generate_rejects_bad_options_before_any_work(generate_call, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(["generate", *argv])
    assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not generate_call  # the library was never called


def test_field_errors_read_as_fields_in_python_and_as_flags_on_the_command_line(monkeypatch, capsys, tmp_path):
    with pytest.raises(ValueError, match=r"^batch_size must be at least 1, got 0$"):
        SamplingConfig(batch_size=0)
    with pytest.raises(ValueError, match=r"^batch_size must be at least 1, got 0$"):
        with_recipe("fast", data="data.jsonl", batch_size=0)
    import diffuseq_cli.training.run

    called = _record(monkeypatch, diffuseq_cli.training.run, "train")
    with pytest.raises(SystemExit) as exc:  # train's -b has no range of its own: the library's check answers
        main(["train", "data.jsonl", "--out", str(tmp_path / "run"), "-b", "0"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and not called
    assert "error: --batch-size must be at least 1, got 0" in err and "batch_size" not in err


@pytest.fixture
def train_call(monkeypatch):
    import diffuseq_cli.training.run

    return _record(monkeypatch, diffuseq_cli.training.run, "train")


def test_train_defaults_are_the_fast_recipe(train_call, tmp_path):
    _call(["train", "data.jsonl", "--out", str(tmp_path / "run")])
    cfg = train_call["args"][0]
    assert cfg == with_recipe("fast", data="data.jsonl", out=str(tmp_path / "run"))
    assert train_call["kwargs"]["resume"] is False


def test_train_maps_flags_to_fields(train_call, tmp_path):
    _call(["train", "data.jsonl", "--out", str(tmp_path / "run"), "--recipe", "paper", "--eval-every", "5",
           "--gpus", "0,2", "--lr", "0.01", "--no-self-condition", "--regions", "exact", "--rounding", "soft"])
    cfg = train_call["args"][0]
    expected = with_recipe("paper", data="data.jsonl", out=str(tmp_path / "run"), eval_bleu_every=5, gpus=(0, 2),
                           lr=0.01, self_condition=False, regions="exact", rounding="soft")
    assert cfg == expected and cfg.ema == 0.9999 and cfg.positions == "absolute"


def test_train_errors_name_the_flag(train_call, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "data.jsonl", "--out", str(tmp_path / "run"), "--length-loss", "0.5", "--regions", "padded"])
    assert exc.value.code == 2
    assert "--length-loss trains a length head, which needs --regions exact" in capsys.readouterr().err
    assert not train_call


def test_evaluate_passes_inputs_and_choices(monkeypatch, tmp_path):
    import diffuseq_cli.evaluation.report

    seen = _record(monkeypatch, diffuseq_cli.evaluation.report, "evaluate")
    for name, text in (("p.txt", "a\nb\n"), ("r.txt", "x\ny\n"), ("s.txt", "m\nn\n")):
        (tmp_path / name).write_text(text)
    _call(["evaluate", str(tmp_path / "p.txt"), str(tmp_path / "r.txt"), "--sources", str(tmp_path / "s.txt"),
           "--mbr", "-q"])
    assert seen["args"] == ([["a", "b"]], ["x", "y"])
    assert seen["kwargs"]["sources"] == ["m", "n"] and seen["kwargs"]["mbr"] is True
    assert seen["kwargs"]["bertscore_model"] is None and seen["kwargs"]["on_progress"] is None


def test_rerank_passes_metric_and_nbest(monkeypatch, tmp_path):
    import diffuseq_cli.evaluation.rerank

    seen = _record(monkeypatch, diffuseq_cli.evaluation.rerank, "rerank")
    (tmp_path / "c.txt").write_text("a\nb\nc\nd\n")
    _call(["rerank", str(tmp_path / "c.txt"), "-n", "2", "--metric", "chrf", "--nbest", "2"])
    assert [s.candidates for s in seen["args"][0]] == [["a", "b"], ["c", "d"]]
    assert seen["kwargs"] == {"metric": "chrf", "nbest": 2}


def test_api_generate_takes_sampling_fields(monkeypatch):
    """``DiffuSeq.generate(**options)`` builds the same SamplingConfig the CLI does."""
    from diffuseq_cli import api

    seen = _record(monkeypatch, api, "generate_texts")
    model = api.DiffuSeq.__new__(api.DiffuSeq)
    model.loaded, model.device = object(), "cpu"
    with pytest.raises(_Called):
        model.generate(["x"], num_samples=2, steps=7, seed=3)
    assert seen["args"][3] == dataclasses.replace(SamplingConfig(), steps=7, seed=3)
    with pytest.raises(TypeError):
        model.generate(["x"], no_such_option=1)


def test_field_errors_keep_user_text_and_cross_processes():
    """Paths and values with braces stay as written; the error pickles (spawned training workers)."""
    import pickle

    from diffuseq_cli.commands.options import flag_name
    from diffuseq_cli.errors import FieldError, literal

    error = pickle.loads(pickle.dumps(FieldError(f"{{out}} {literal('runs/{a}')}: exists and is not a folder")))
    assert str(error) == "out runs/{a}: exists and is not a folder"
    assert error.render(flag_name) == "--out runs/{a}: exists and is not a folder" and error.exit_code == 2
