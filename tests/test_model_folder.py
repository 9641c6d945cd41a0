"""Model folders: exact round trips, official import through the CLI, safe loading."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from diffuseq_cli import DiffuSeq
from diffuseq_cli.config import ModelFolderConfig, preset
from diffuseq_cli.core.model import DiffuSeqTransformer
from diffuseq_cli.errors import DiffuseqError
from diffuseq_cli.modelfiles.folder import is_complete, load_model_folder, save_model_folder
from diffuseq_cli.modelfiles.official import load_official_state
from diffuseq_cli.modelfiles.tokenizer import train_bpe

from paths import OFFICIAL_TINY, QQP_VALID, needs_shared


@pytest.fixture(scope="module")
def tokenizer(shared_data):
    lines = [json.loads(x)["src"] for x in QQP_VALID.read_text().splitlines()[:300]]
    return train_bpe(lines, vocab_size=300)


def test_model_folder_round_trips_exactly(tmp_path, tokenizer):
    torch.manual_seed(0)
    cfg = ModelFolderConfig(model=preset("tiny", tokenizer.vocab_size, max_positions=32))
    model = DiffuSeqTransformer(cfg.model)
    save_model_folder(tmp_path / "m", cfg, model, tokenizer, "# card\n")
    assert is_complete(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir() if not p.name.startswith(".")) == [
        "README.md", "config.json", "model.safetensors", "tokenizer.json"]
    loaded = load_model_folder(tmp_path / "m")
    assert loaded.config == cfg
    saved, read = model.state_dict(), loaded.model.state_dict()
    assert list(saved) == list(read)  # every tensor, in order: zip below would stop at the shorter
    for k in saved:
        assert torch.equal(saved[k], read[k]), k
    assert loaded.tokenizer.encode(["what is it?"]) == tokenizer.encode(["what is it?"])
    # the tied table is stored once: no separate lm_head weight in the file
    assert "lm_head.weight" not in load_file(str(tmp_path / "m" / "model.safetensors"))


@needs_shared
def test_official_checkpoint_round_trips_through_convert(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [f"w{i}" for i in range(56)]) + "\n")
    out = tmp_path / "converted"
    r = subprocess.run(
        [sys.executable, "-m", "diffuseq_cli", "convert", str(OFFICIAL_TINY / "ema_0.9999_000100.pt"),
         "--tokenizer", str(vocab), "--heads", "4", "-o", str(out)],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    folder = DiffuSeq.from_pretrained(out)
    direct = DiffuSeq.from_pretrained(OFFICIAL_TINY / "ema_0.9999_000100.pt", tokenizer=vocab, num_heads=4)
    via_folder, via_pt = folder.model.state_dict(), direct.model.state_dict()
    assert via_folder.keys() == via_pt.keys()
    for k in via_folder:
        assert torch.equal(via_folder[k], via_pt[k]), k
    official = load_official_state(OFFICIAL_TINY / "ema_0.9999_000100.pt")
    assert torch.equal(folder.model.word_embedding.weight, official["lm_head.weight"])
    assert torch.equal(folder.model.lm_head_bias, official["lm_head.bias"])
    assert folder.config.diffusion.steps == 50 and folder.config.sequence.seq_len == 32
    # the official model's layout and sampling, in a folder any diffuseq (format 1 on) reads
    assert folder.config.model.positions == "absolute" and folder.config.diffusion.rounding == "l2"
    assert json.loads((out / "config.json").read_text())["format_version"] == 1


def test_a_folder_of_a_newer_format_is_refused(tmp_path, tokenizer):
    cfg = ModelFolderConfig(model=preset("tiny", tokenizer.vocab_size, max_positions=32))
    save_model_folder(tmp_path / "m", cfg, DiffuSeqTransformer(cfg.model), tokenizer, "# card\n")
    data = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**data, "format_version": 4}))
    with pytest.raises(DiffuseqError, match="newer"):
        load_model_folder(tmp_path / "m")


def test_loading_rejects_a_corrupt_weights_file(tmp_path, tokenizer):
    cfg = ModelFolderConfig(model=preset("tiny", tokenizer.vocab_size, max_positions=32))
    save_model_folder(tmp_path / "m", cfg, DiffuSeqTransformer(cfg.model), tokenizer, "")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(DiffuseqError, match="cannot read weights"):
        load_model_folder(tmp_path / "m")


def test_a_failed_write_leaves_no_folder(tmp_path, tokenizer):
    cfg = ModelFolderConfig(model=preset("tiny", tokenizer.vocab_size, max_positions=32))

    class Boom(Exception):
        pass

    class Bad(DiffuSeqTransformer):
        def state_dict(self, *a, **k):
            raise Boom()

    with pytest.raises(Boom):
        save_model_folder(tmp_path / "m", cfg, Bad(cfg.model), tokenizer, "")
    assert not (tmp_path / "m").exists()
    assert list(tmp_path.iterdir()) == []


@needs_shared
def test_wordpiece_vocab_tokenizer_matches_bert_tokenizer_json():
    from diffuseq_cli.modelfiles.tokenizer import load_tokenizer

    from paths import BERT_VOCAB

    a = load_tokenizer(BERT_VOCAB)
    b = load_tokenizer(BERT_VOCAB.parent / "tokenizer.json")
    text = ["How do I learn Python quickly?", "What's the best way to lose weight?"]
    assert a.encode(text) == b.encode(text)
    assert a.vocab_size == 30522 and (a.pad_id, a.cls_id, a.sep_id) == (0, 101, 102)
    assert a.decode(a.encode(text)) == ["how do i learn python quickly?", "what's the best way to lose weight?"]


def test_generated_text_ends_at_the_first_sep_or_pad(tokenizer):
    a, b = tokenizer.encode(["what", "why"])
    cls, sep, pad = tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id
    seqs = [[cls, *a, sep, *b, pad], [cls, *a, pad, *b, sep], [*a, cls, *b, sep, pad]]
    assert tokenizer.decode(seqs, until_end=True) == ["what", "what", "what why"]
    assert tokenizer.decode(seqs) == ["what why"] * 3
