"""Training data: robust JSONL reading, clear errors with file and line, packing, batches, the cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from diffuseq_cli.cli import main
from diffuseq_cli.core.layout import NUM_SPECIALS, SOURCE_SPECIALS, pack, truncate_pair
from diffuseq_cli.errors import DataError
from diffuseq_cli.modelfiles.tokenizer import train_bpe
from diffuseq_cli.training import data as data_mod
from diffuseq_cli.training.data import (
    TokenizedData,
    cache_key,
    cache_path,
    collate,
    epoch_batches,
    load_or_tokenize,
    read_pairs,
    tokenize_file,
)

from paths import QQP_VALID


@pytest.fixture(scope="module")
def tok(shared_data):
    texts = []
    for src, trg, _ in read_pairs(QQP_VALID):
        texts += [src, trg]
    return train_bpe(texts, vocab_size=300)


def _write(tmp_path, content: bytes, name="data.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


# --- reading -------------------------------------------------------------------------------------
def test_bom_crlf_blank_lines_and_missing_final_newline_are_accepted(tmp_path):
    raw = ('\ufeff{"src": "a b", "trg": "c"}\r\n'
           "\r\n"
           '   \n'
           '{"src": "d", "trg": "e f", "extra": 1}\r\n'
           '{"src": "g", "trg": "h"}').encode("utf-8")
    pairs = list(read_pairs(_write(tmp_path, raw)))
    assert pairs == [("a b", "c", 1), ("d", "e f", 4), ("g", "h", 5)]


@pytest.mark.parametrize(
    "content, line, words",
    [
        (b'{"src": "a", "trg": "b"}\n{"src": "a", "trg": \n', 2, "malformed JSON"),
        (b'{"src": "a", "trg": "b"}\n\n{"src": "a"}\n', 3, "missing key 'trg'"),
        (b'{"trg": "a"}\n', 1, "missing key 'src'"),
        (b'{"src": "a", "trg": 3}\n', 1, "'trg' must be a string"),
        (b'{"src": null, "trg": "b"}\n', 1, "'src' must be a string"),
        (b'["a", "b"]\n', 1, "JSON object"),
        (b'{"src": "a", "trg": "b"}\n{"src": "\xff\xfe", "trg": "b"}\n', 2, "not valid UTF-8"),
        (b'{"src": "a", "trg": "b"} trailing\n', 1, "malformed JSON"),
    ],
)
def test_bad_lines_name_the_file_and_line(tmp_path, content, line, words):
    path = _write(tmp_path, content)
    with pytest.raises(DataError) as info:
        list(read_pairs(path))
    assert f"{path}:{line}: " in str(info.value)
    assert words in str(info.value)
    assert info.value.line == line


def test_empty_file_is_an_error_naming_the_file(tmp_path, tok):
    for content in (b"", b"\n\r\n  \n"):
        path = _write(tmp_path, content)
        with pytest.raises(DataError, match=f"{path}: no examples"):
            tokenize_file(path, tok, 32)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        list(read_pairs(tmp_path / "nope.jsonl"))


# --- packing -------------------------------------------------------------------------------------
def test_pack_is_the_official_layout():
    ids, n_src = pack([10, 11], [20], cls_id=2, sep_id=3)
    assert ids == [2, 10, 11, 3, 3, 2, 20, 3]
    assert n_src == 5
    assert n_src == 2 + SOURCE_SPECIALS and len(ids) == 3 + NUM_SPECIALS  # what generation's length budget counts


def test_truncation_shortens_the_longer_side_and_keeps_both():
    x, y, cut = truncate_pair(list(range(10)), [1, 2], 6)
    assert cut and len(x) + len(y) == 6 and y == [1, 2] and x == [0, 1, 2, 3]
    x, y, cut = truncate_pair([1], list(range(30)), 4)
    assert cut and x == [1] and len(y) == 3
    assert truncate_pair([1, 2], [3], 5) == ([1, 2], [3], False)


def test_long_pairs_are_truncated_and_counted_with_line_numbers(tmp_path, tok):
    long = " ".join(["word"] * 80)
    lines = [{"src": "short one", "trg": "short two"}, {"src": "a", "trg": long}, {"src": long, "trg": "b"},
             {"src": "c", "trg": "d"}]
    path = _write(tmp_path, ("\n".join(json.dumps(r) for r in lines) + "\n").encode())
    data = tokenize_file(path, tok, seq_len=24)
    assert data.truncated == 2
    assert list(data.truncated_lines) == [2, 3]
    assert data.lengths.max() <= 24
    for i in range(len(data)):
        seq = data.sequence(i)
        assert seq[0] == tok.cls_id and seq[-1] == tok.sep_id
        assert data.n_src[i] >= 4 and len(seq) - data.n_src[i] >= 3  # both sides keep a token


def test_tokenized_data_is_flat_int32(tok, tmp_path):
    data = tokenize_file(QQP_VALID, tok, seq_len=64, chunk=500)
    assert data.ids.dtype == np.int32 and data.ids.ndim == 1
    assert len(data) == 2048 and data.offsets[-1] == len(data.ids)
    # chunking does not change the result
    again = tokenize_file(QQP_VALID, tok, seq_len=64, chunk=4096)
    assert np.array_equal(data.ids, again.ids) and np.array_equal(data.n_src, again.n_src)


def test_collate_pads_inside_the_target_region(tok):
    seqs = [pack([5, 6, 7], [8], tok.cls_id, tok.sep_id), pack([5], [8, 9, 10, 11, 12], tok.cls_id, tok.sep_id)]
    lens = [len(s) for s, _ in seqs]
    offsets = np.concatenate([[0], np.cumsum(lens)])
    data = TokenizedData(np.concatenate([np.array(s, dtype=np.int32) for s, _ in seqs]), offsets,
                         np.array([n for _, n in seqs], dtype=np.int32))
    ids, mask, _ = collate(data, np.array([1, 0]), tok.pad_id)
    assert ids.shape == (2, 16)  # longest 12, rounded up to 8
    for row, i in enumerate([1, 0]):
        seq, n_src = seqs[i]
        assert list(ids[row, : len(seq)]) == seq
        assert (ids[row, len(seq):] == tok.pad_id).all()
        assert not mask[row, :n_src].any() and mask[row, n_src:].all()


# --- batches -------------------------------------------------------------------------------------
def test_epoch_batches_are_deterministic_full_disjoint_and_length_aware():
    rng = np.random.default_rng(0)
    lengths = rng.integers(8, 64, size=1000)
    a = epoch_batches(lengths, 32, seed=3, epoch=1)
    assert all(len(b) == 32 for b in a) and len(a) == 1000 // 32
    flat = np.concatenate(a)
    assert len(np.unique(flat)) == len(flat)
    assert all(np.array_equal(x, y) for x, y in zip(a, epoch_batches(lengths, 32, seed=3, epoch=1), strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, epoch_batches(lengths, 32, seed=3, epoch=2), strict=True))
    # sorted within pools: the padding a batch pays is far below a random batch's
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in a])
    assert spread < 10


def test_fewer_examples_than_a_batch_is_an_error():
    with pytest.raises(DataError, match="fewer than one batch"):
        epoch_batches(np.array([5, 6, 7]), 4, seed=0, epoch=0)


# --- the cache -----------------------------------------------------------------------------------
def test_cache_is_reused_and_keyed_by_content_and_tokenizer(tmp_path, tok, monkeypatch):
    src = tmp_path / "train.jsonl"
    src.write_bytes(b"".join(QQP_VALID.read_bytes().splitlines(keepends=True)[:200]))
    cache = tmp_path / "cache"
    first = load_or_tokenize(src, tok, 32, cache)
    path = cache_path(src, tok, 32, cache)
    assert path.exists() and list(cache.iterdir()) == [path]

    def fail(*args, **kwargs):
        raise AssertionError("tokenized again instead of using the cache")

    monkeypatch.setattr(data_mod, "tokenize_file", fail)
    second = load_or_tokenize(src, tok, 32, cache)
    assert np.array_equal(first.ids, second.ids) and second.truncated == first.truncated
    monkeypatch.undo()

    key = cache_key(src, tok.to_str(), 32)
    assert cache_key(src, tok.to_str(), 48) != key  # packing settings
    other_tok = train_bpe(["completely different text here", "and more of it"], vocab_size=50)
    assert cache_key(src, other_tok.to_str(), 32) != key  # tokenizer
    with open(src, "a") as f:
        f.write('{"src": "one more", "trg": "line"}\n')
    assert cache_key(src, tok.to_str(), 32) != key  # content
    third = load_or_tokenize(src, tok, 32, cache)
    assert len(third) == len(first) + 1 and len(list(cache.glob("*.npz"))) == 2


def test_an_unreadable_cache_file_is_rebuilt(tmp_path, tok):
    src = tmp_path / "train.jsonl"
    src.write_text('{"src": "a b c", "trg": "d e"}\n')
    cache = tmp_path / "cache"
    load_or_tokenize(src, tok, 32, cache)
    path = cache_path(src, tok, 32, cache)
    path.write_bytes(b"garbage")
    assert len(load_or_tokenize(src, tok, 32, cache)) == 1


# --- through the command line ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "content, expect",
    [
        (b'{"src": "a", "trg": "b"}\n{"src": "a", "trg": \n', ":2: malformed JSON"),
        (b'{"src": "a", "trg": "b"}\n{"src": "a"}\n', ":2: missing key 'trg'"),
        (b'{"src": "a", "trg": 1}\n', ":1: 'trg' must be a string"),
        (b'{"src": "a", "trg": "b"}\n{"src": "\xc3\x28", "trg": "b"}\n', ":2: not valid UTF-8"),
        (b"", "no examples"),
    ],
)
def test_cli_bad_data_is_one_red_line_and_exit_1(tmp_path, capsys, content, expect):
    path = _write(tmp_path, content)
    with pytest.raises(SystemExit) as info:
        main(["train", str(path), "--out", str(tmp_path / "run"), "--preset", "tiny", "--vocab-size", "100", "-q"])
    out, err = capsys.readouterr()
    assert info.value.code == 1
    assert out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and str(path) in lines[0] and expect in lines[0]
    assert "Traceback" not in err
    assert not list((tmp_path / "run").glob("checkpoints/*"))
