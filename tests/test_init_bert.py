"""``train --init BERT``: the official ``--use_plm_init bert``, from a folder or the (fake) Hub.

The fixture ``official-plm-tiny`` holds a tiny random BERT folder, the official model
initialised from it (saved as an official checkpoint) and ``expected.json``: which official
tensor came from which BERT tensor. Our initialised model must hold exactly those tensors.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from diffuseq_cli.cli import main
from diffuseq_cli.core.model import DiffuSeqTransformer
from diffuseq_cli.errors import FieldError, UsageError
from diffuseq_cli.modelfiles.bert import official_name, read_bert
from diffuseq_cli.modelfiles.folder import read_weights
from diffuseq_cli.modelfiles.official import convert_state, load_official_state, our_name
from diffuseq_cli.training.config import TrainConfig, with_recipe
from diffuseq_cli.training.distributed import Placement
from diffuseq_cli.training.run import Trainer, prepare_run

from helpers_hub import go_offline, serve_hub
from helpers_models import build_tiny_model
from paths import FIXTURES, QQP_VALID, require_shared

require_shared(module=True)

PLM = FIXTURES / "official-plm-tiny"
BERT = PLM / "bert"
EXPECTED = json.loads((PLM / "expected.json").read_text())
BERT_TENSORS = load_file(str(BERT / "model.safetensors"))


def ours(official: str) -> str:
    """Our name for an official key (the tied table has one name here)."""
    return "word_embedding.weight" if official in ("word_embedding.weight", "lm_head.weight") else our_name(official)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "pairs.jsonl"
    path.write_text("".join(QQP_VALID.read_text().splitlines(keepends=True)[:48]))
    return path


def cli(capsys, *args) -> tuple[int, str, str]:
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def train_args(data, out, init, *extra):
    return ["train", data, "--out", out, "--init", init, "--seq-len", "32", "--diffusion-steps", "20", "-b", "8",
            "--log-every", "1", "-q", *extra]


# --- the mapping ---------------------------------------------------------------------------
def test_official_names_are_the_fixtures():
    """Every BERT tensor the official init copies gets the official name expected.json gives it; no other does."""
    for official, bert_key in EXPECTED["from_bert"].items():
        assert official_name(bert_key) == ("word_embedding.weight" if official == "lm_head.weight" else official)
    copied = set(EXPECTED["from_bert"].values())
    assert all(official_name(k) is None for k in BERT_TENSORS if k not in copied)  # token types: not used
    assert any(k not in copied for k in BERT_TENSORS)


def test_init_holds_berts_tensors_exactly_where_the_official_init_puts_them(data, tmp_path):
    cfg, tok = prepare_run(with_recipe("paper", data=str(data), out=str(tmp_path / "run"), init=str(BERT), seq_len=32,
                                       diffusion_steps=20, batch_size=8), resume=False)
    trainer = Trainer(cfg, tok, Placement(0, 1, torch.device("cpu")), None)
    m = trainer.folder_config.model
    assert (m.vocab_size, m.embed_dim, m.hidden_size, m.num_layers, m.num_heads, m.ffn_size, m.max_positions) == \
        (82, 64, 64, 2, 4, 256, 64)
    state = trainer.model.state_dict()
    assert not any(k.startswith(("up_proj", "down_proj")) for k in state)  # d = hidden: none, as the official model
    official = convert_state(load_official_state(PLM / "ema_0.9999_000000.pt"), num_heads=EXPECTED["heads"])[1]
    for name, bert_key in EXPECTED["from_bert"].items():
        assert torch.equal(state[ours(name)], BERT_TENSORS[bert_key]), name
        assert torch.equal(state[ours(name)], official[ours(name)]), name
    # The rest start as a model without --init does: the run's seed, our initialisation.
    torch.manual_seed(cfg.seed)
    fresh = DiffuSeqTransformer(m).state_dict()
    copied = {ours(n) for n in EXPECTED["from_bert"]}
    rest = [k for k in state if k not in copied]
    assert "time_mlp.0.weight" in rest and "lm_head_bias" in rest
    assert all(torch.equal(state[k], fresh[k]) for k in rest)
    assert not torch.equal(state["word_embedding.weight"], fresh["word_embedding.weight"])


# --- training from a local BERT folder, then generation ----------------------------------
def test_train_paper_recipe_keeps_bert_then_generates(data, tmp_path, capsys):
    run = tmp_path / "run"
    code, out, err = cli(capsys, *train_args(data, run, BERT, "--recipe", "paper", "--steps", "2", "--lr", "1e-12"))
    assert code == 0, err
    weights = read_weights(run / "latest")
    for name, bert_key in EXPECTED["from_bert"].items():  # a rate too small to move them: still BERT's
        torch.testing.assert_close(weights[ours(name)], BERT_TENSORS[bert_key], rtol=0, atol=1e-6)
    saved = json.loads((run / "config.json").read_text())
    assert saved["init_source"] == f"local:{BERT.resolve()}" and saved["preset"] is None
    assert saved["resolved_model"]["embed_dim"] == 64 and saved["resolved_model"]["positions"] == "absolute"
    card = (run / "latest" / "README.md").read_text()
    assert f"`local:{BERT.resolve()}` (a BERT, as the official `--use_plm_init bert`)" in card
    assert f"--init local:{BERT.resolve()}" in json.loads((run / "latest" / "config.json").read_text())["source"]

    src = tmp_path / "src.txt"
    src.write_text("how do i learn python?\nwhat is the best way to learn?\n")
    code, out, err = cli(capsys, "generate", "--model", run, "-i", src, "--steps", "4", "-q")
    assert code == 0, err
    assert len(out.splitlines()) == 2

    code, _, err = cli(capsys, *train_args(data, run, BERT, "--resume", "--steps", "3"))
    assert code == 0, err
    assert (run / "checkpoints" / "step_00000003").is_dir()


def test_fast_recipe_trains_from_bert(data, tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = cli(capsys, *train_args(data, run, BERT, "--steps", "2"))
    assert code == 0, err
    model = json.loads((run / "latest" / "config.json").read_text())["model"]
    assert (model["embed_dim"], model["positions"], model["absorbing_state"], model["length_head"]) == (64, "segment", True, True)
    weights = read_weights(run / "latest")
    assert torch.isfinite(torch.cat([w.flatten() for w in weights.values()])).all()
    assert weights["position_embedding.weight"].shape == (64, 64) and "segment_embedding.weight" in weights


# --- other forms of a BERT folder ----------------------------------------------------------
def test_pickled_weights_with_old_names_and_tokenizer_json(tmp_path):
    """pytorch_model.bin of a pretraining checkpoint (``bert.`` prefix, LayerNorm gamma/beta), tokenizer.json."""
    folder = tmp_path / "bert"
    folder.mkdir()
    shutil.copy(BERT / "config.json", folder)
    renamed = {"bert." + k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
               for k, v in BERT_TENSORS.items()}
    renamed["cls.predictions.bias"] = torch.zeros(82)
    torch.save(renamed, folder / "pytorch_model.bin")
    from diffuseq_cli.modelfiles.tokenizer import load_tokenizer

    load_tokenizer(BERT / "vocab.txt").save(folder / "tokenizer.json")
    found = read_bert(folder)
    assert found.weights.name == "pytorch_model.bin" and found.tokenizer.name == "tokenizer.json"
    got, want = found.state, read_bert(BERT).state
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_cased_vocab_follows_the_tokenizer_config(tmp_path):
    folder = tmp_path / "bert"
    shutil.copytree(BERT, folder)
    (folder / "tokenizer_config.json").write_text('{"do_lower_case": false}')
    from diffuseq_cli.modelfiles.bert import bert_tokenizer

    assert bert_tokenizer(read_bert(folder)).encode(["What"]) == [[1]]  # [UNK]: the vocabulary is lower-case
    assert bert_tokenizer(read_bert(BERT)).encode(["What"]) != [[1]]


# --- bad input: one line, exit 2, no run folder --------------------------------------------
def _bert_copy(tmp_path: Path, change) -> Path:
    folder = tmp_path / "bad-bert"
    shutil.copytree(BERT, folder)
    for p in folder.iterdir():
        p.chmod(0o644)
    change(folder)
    return folder


def _set_config(**fields):
    def change(folder):
        config = json.loads((folder / "config.json").read_text())
        config.update(fields)
        (folder / "config.json").write_text(json.dumps(config))
    return change


def _pickled_object(folder):
    (folder / "model.safetensors").unlink()
    torch.save({"weights": BERT_TENSORS, "note": Placement(0, 1, torch.device("cpu"))}, folder / "pytorch_model.bin")


def _drop_layer_tensor(folder):
    tensors = dict(BERT_TENSORS)
    del tensors["encoder.layer.1.output.dense.weight"]
    save_file(tensors, str(folder / "model.safetensors"))


@pytest.mark.parametrize("change, extra, message", [
    (_set_config(model_type="gpt2"), [], "'gpt2' model, not BERT"),
    (_set_config(model_type="roberta"), [], "'roberta' model, not BERT"),
    (lambda f: (f / "model.safetensors").unlink(), [], "no weights: expected model.safetensors or pytorch_model.bin"),
    (_drop_layer_tensor, [], "lacks encoder.layer.1.output.dense.weight"),
    (_pickled_object, [], "pytorch_model.bin holds objects other than tensors"),
    (lambda f: (f / "vocab.txt").write_text((f / "vocab.txt").read_text() + "extra\n"), [],
     "vocab.txt holds 83 tokens, but the model has 82 word embeddings"),
    (_set_config(vocab_size=90), [], "embeddings.word_embeddings.weight has shape (82, 64), but config.json's sizes make it (90, 64)"),
    (lambda f: None, ["--seq-len", "128"], "has 64 positions, fewer than --seq-len 128"),
    (lambda f: None, ["--recipe", "paper"], "has 64 positions, fewer than --seq-len 128"),  # the paper recipe's 128
    (lambda f: None, ["--preset", "base"], "--preset base contradicts --init"),
    (lambda f: None, ["--embed-dim", "128"], "--embed-dim asks for embed_dim 128, but --init"),
    (_set_config(hidden_act="relu"), [], "hidden_act 'relu'"),
])
def test_bad_bert_is_one_line_exit_2_and_no_run_folder(data, tmp_path, capsys, change, extra, message):
    folder = _bert_copy(tmp_path, change)
    run = tmp_path / "run"
    code, out, err = cli(capsys, "train", data, "--out", run, "--init", folder, "-b", "8", "--steps", "1", "-q",
                         *(extra if "--seq-len" in extra or "--recipe" in extra else ["--seq-len", "32", *extra]))
    assert code == 2, err
    assert message in err and "--init" in err and "Traceback" not in err, err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1 and out == ""
    assert not run.exists()


def test_more_positions_than_needed_are_fine(data, tmp_path):
    cfg, _ = prepare_run(TrainConfig(data=str(data), out=str(tmp_path / "run"), init=str(BERT), seq_len=16,
                                     batch_size=8), resume=False)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["resolved_model"]["max_positions"] == 64


def test_a_model_folder_start_refuses_other_sizes_too(data, tmp_path):
    folder = build_tiny_model(tmp_path / "tiny", seq_len=48)
    common = dict(data=str(data), init=str(folder), seq_len=32, batch_size=8)
    prepare_run(with_recipe("fast", out=str(tmp_path / "same"), preset="tiny", **common), resume=False)  # its own sizes
    with pytest.raises(FieldError, match="preset small contradicts"):
        prepare_run(with_recipe("fast", out=str(tmp_path / "small"), preset="small", **common), resume=False)
    cfg, _ = prepare_run(with_recipe("paper", out=str(tmp_path / "paper"), **common), resume=False)
    assert cfg.embed_dim is None  # the paper recipe's d = 128 gives way to the folder's 16


def test_runs_saved_before_bert_starts_ignored_their_preset():
    old = TrainConfig(data="d.jsonl", init="runs/x/latest", preset="small").to_json()
    data = json.loads(old)
    del data["init_source"]
    assert TrainConfig.from_json(json.dumps(data)).preset is None
    assert TrainConfig(data="d.jsonl").preset == "small"


# --- the Hub -----------------------------------------------------------------------------
COMMIT = "b" * 40


def _bert_repo(weights: str = "model.safetensors") -> dict:
    files = {name: (BERT / name).read_bytes() for name in ("config.json", "vocab.txt")}
    if weights == "model.safetensors":
        files[weights] = (BERT / weights).read_bytes()
    else:
        import io

        buffer = io.BytesIO()
        torch.save(BERT_TENSORS, buffer)
        files[weights] = buffer.getvalue()
    files["tf_model.h5"] = b"never fetched"
    return {"refs": {"main": COMMIT}, "commits": {COMMIT: files}}


@pytest.fixture
def bert_hub(tmp_path, monkeypatch):
    server = serve_hub(tmp_path, monkeypatch, {"org/tiny-bert": _bert_repo(), "org/pickled-bert": _bert_repo("pytorch_model.bin")})
    yield server
    server.stop()


def test_hub_bert_downloads_then_works_offline(data, tmp_path, capsys, monkeypatch, bert_hub):
    run = tmp_path / "run"
    code, _, err = cli(capsys, *train_args(data, run, "org/tiny-bert", "--recipe", "paper", "--steps", "1", "--lr", "1e-12"))
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["init_source"] == f"hub:org/tiny-bert@{COMMIT}"
    assert f"`hub:org/tiny-bert@{COMMIT}`" in (run / "latest" / "README.md").read_text()
    assert bert_hub.fetched("model.safetensors") == 1 and bert_hub.fetched("tf_model.h5") == 0
    weights = read_weights(run / "latest")
    torch.testing.assert_close(weights["blocks.1.ffn_out.weight"], BERT_TENSORS["encoder.layer.1.output.dense.weight"],
                               rtol=0, atol=1e-6)

    go_offline(bert_hub, monkeypatch)
    code, _, err = cli(capsys, *train_args(data, tmp_path / "again", "org/tiny-bert@main", "--steps", "1"))
    assert code == 0, err
    code, _, err = cli(capsys, *train_args(data, run, "org/tiny-bert", "--resume", "--steps", "2"))  # the pinned snapshot
    assert code == 0, err


def test_hub_bert_with_pickled_weights_only(data, tmp_path, capsys, bert_hub):
    run = tmp_path / "run"
    code, _, err = cli(capsys, *train_args(data, run, "org/pickled-bert", "--steps", "1"))
    assert code == 0, err
    assert bert_hub.fetched("pytorch_model.bin") == 1


def test_no_network_and_no_cache_is_one_line_exit_1(data, tmp_path, capsys, bert_hub):
    bert_hub.stop()
    run = tmp_path / "run"
    code, out, err = cli(capsys, *train_args(data, run, "org/tiny-bert", "--steps", "1"))
    assert code == 1 and "cannot be downloaded" in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and not run.exists()


@pytest.mark.parametrize("spec, repo, revision", [
    ("bert-base-uncased", "bert-base-uncased", None),  # the Hub's names without an organisation
    ("google-bert/bert-base-uncased", "google-bert/bert-base-uncased", None),
    ("org/name@v1.0", "org/name", "v1.0"),
])
def test_init_hub_ids(spec, repo, revision, monkeypatch, tmp_path):
    from diffuseq_cli.modelfiles import hub

    asked = []

    def fake_from_hub(repo, revision, *, quiet, on_message, files):
        asked.append((repo, revision, files))
        return hub.ResolvedModel(BERT, "folder", f"hub:{repo}@{'c' * 40}")

    monkeypatch.setattr(hub, "_from_hub", fake_from_hub)
    monkeypatch.chdir(tmp_path)
    assert hub.resolve_init(spec).source == f"hub:{repo}@{'c' * 40}"
    assert asked == [(repo, revision, hub.INIT_FILES)]
    (tmp_path / spec.partition("@")[0]).mkdir(parents=True)  # an existing folder of that name wins
    with pytest.raises(UsageError, match="not a model folder"):
        hub.resolve_init(spec.partition("@")[0])
    assert len(asked) == 1


def test_unreadable_tokenizer_config_is_a_clear_error(data, tmp_path, capsys):
    folder = _bert_copy(tmp_path, lambda f: (f / "tokenizer_config.json").write_text("{not json"))
    code, _, err = cli(capsys, *train_args(data, tmp_path / "run", folder, "--steps", "1"))
    assert code == 2 and "tokenizer_config.json: cannot read it as JSON" in err and "Traceback" not in err, err
