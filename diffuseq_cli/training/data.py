"""Training data: robust JSONL reading, pairs packed in the official layout (``core.layout``), flat token arrays, length-aware batches.

Token ids of millions of lines live in one int32 array with offsets, not Python lists.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..core.layout import NUM_SPECIALS, pack, truncate_pair
from ..errors import DataError
from ..textio import decode_line


def read_pairs(path: str | Path) -> Iterator[tuple[str, str, int]]:
    """Yield (src, trg, line_number) from a JSONL file of {"src", "trg"} objects.

    Accepts a UTF-8 BOM, CRLF endings, a missing final newline and blank lines (skipped);
    anything else wrong is a DataError naming the file and line.
    """
    path = Path(path)
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise DataError("file not found", path) from None
    with fh:
        for n, raw in enumerate(fh, start=1):
            line = decode_line(raw, n, str(path)).strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"malformed JSON ({exc.msg})", path, n) from None
            if not isinstance(obj, dict):
                raise DataError("expected a JSON object with 'src' and 'trg'", path, n)
            for key in ("src", "trg"):
                if key not in obj:
                    raise DataError(f"missing key {key!r}", path, n)
                if not isinstance(obj[key], str):
                    raise DataError(f"{key!r} must be a string", path, n)
            yield obj["src"], obj["trg"], n


MAX_REPORTED_LINES = 5


@dataclass
class TokenizedData:
    """All packed sequences in one flat array: sequence i is ids[offsets[i]:offsets[i+1]]."""

    ids: np.ndarray  # (N_tokens,) int32
    offsets: np.ndarray  # (N+1,) int64
    n_src: np.ndarray  # (N,) int32
    truncated: int = 0  # pairs shortened to fit seq_len
    truncated_lines: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # the first few, 1-based

    def __len__(self) -> int:
        return len(self.n_src)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    def save(self, path: Path) -> None:
        """Write atomically (a unique temporary name, then rename): concurrent writers are safe."""
        tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.npz")
        try:
            np.savez(tmp, ids=self.ids, offsets=self.offsets, n_src=self.n_src, truncated=np.array(self.truncated),
                     truncated_lines=self.truncated_lines)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path) -> "TokenizedData":
        with np.load(path) as z:
            lines = z["truncated_lines"] if "truncated_lines" in z.files else np.zeros(0, dtype=np.int64)
            return cls(ids=z["ids"], offsets=z["offsets"], n_src=z["n_src"], truncated=int(z["truncated"]),
                       truncated_lines=lines)


def tokenize_file(path, tokenizer, seq_len: int, chunk: int = 4096) -> TokenizedData:
    """Read, tokenize and pack a JSONL file in chunks of ``chunk`` lines.

    Each chunk becomes one int32 array at once, so memory stays proportional to the
    token count (no Python object per sequence survives a chunk).
    """
    id_chunks, len_chunks, src_chunks = [], [], []
    truncated, truncated_lines = 0, []
    budget = seq_len - NUM_SPECIALS

    def flush(srcs, trgs, lines):
        nonlocal truncated
        seqs, lens, n_srcs = [], [], []
        for x, y, n in zip(tokenizer.encode(srcs), tokenizer.encode(trgs), lines):
            x, y, cut = truncate_pair(x, y, budget)
            if cut:
                truncated += 1
                if len(truncated_lines) < MAX_REPORTED_LINES:
                    truncated_lines.append(n)
            seq, ns = pack(x, y, tokenizer.cls_id, tokenizer.sep_id)
            seqs.extend(seq)
            lens.append(len(seq))
            n_srcs.append(ns)
        id_chunks.append(np.asarray(seqs, dtype=np.int32))
        len_chunks.append(np.asarray(lens, dtype=np.int64))
        src_chunks.append(np.asarray(n_srcs, dtype=np.int32))

    srcs, trgs, lines = [], [], []
    for s, t, n in read_pairs(path):
        srcs.append(s)
        trgs.append(t)
        lines.append(n)
        if len(srcs) == chunk:
            flush(srcs, trgs, lines)
            srcs, trgs, lines = [], [], []
    if srcs:
        flush(srcs, trgs, lines)
    if not len_chunks:
        raise DataError("no examples (the file is empty or holds only blank lines)", path)
    lengths = np.concatenate(len_chunks)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return TokenizedData(np.concatenate(id_chunks), offsets, np.concatenate(src_chunks), truncated,
                         np.asarray(truncated_lines, dtype=np.int64))


_HASHES: dict[tuple, str] = {}


def file_hash(path) -> str:
    """sha256 of a file's bytes (hex); remembered per (path, size, mtime) within a process."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DataError("file not found", path) from None
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def cache_key(path, tokenizer_json: str, seq_len: int) -> str:
    """Content hash of the data file, the tokenizer and the packing settings."""
    h = hashlib.sha256(file_hash(path).encode())
    h.update(hashlib.sha256(tokenizer_json.encode()).digest())
    h.update(f"seq_len={seq_len};layout=official-v1".encode())
    return h.hexdigest()[:20]


def cache_path(path, tokenizer, seq_len: int, cache_dir: Path) -> Path:
    return Path(cache_dir) / f"{Path(path).stem}-{cache_key(path, tokenizer.to_str(), seq_len)}.npz"


def load_or_tokenize(path, tokenizer, seq_len: int, cache_dir: Path) -> TokenizedData:
    """Tokenized data from the cache when the file, tokenizer and settings are unchanged."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    cached = cache_path(path, tokenizer, seq_len, cache_dir)
    if cached.exists():
        try:
            return TokenizedData.load(cached)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # unreadable (a disk that filled up, say): tokenize again and replace it
    data = tokenize_file(path, tokenizer, seq_len)
    data.save(cached)
    return data


def length_stats(data: TokenizedData) -> tuple[int, float]:
    """(99th percentile of target lengths, 99th percentile of target/source length ratio), specials included."""
    trg = data.lengths - data.n_src
    ratio = trg / np.maximum(data.n_src, 1)
    return int(np.ceil(np.percentile(trg, 99))), float(np.percentile(ratio, 99))


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int, pool: int = 64) -> list[np.ndarray]:
    """Length-aware batches for one epoch: shuffle, sort within pools of ``pool`` batches, shuffle batches.

    Deterministic in (seed, epoch), so every rank computes the same global batches.
    Only full batches are used (the remainder of an epoch goes into the next shuffle).
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    n_full = len(order) // batch_size
    if n_full == 0:
        raise DataError(f"only {len(lengths)} examples, fewer than one batch of {batch_size}; lower --batch-size")
    order = order[: n_full * batch_size]
    chunk = batch_size * pool
    batches = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def collate(data: TokenizedData, index: np.ndarray, pad_id: int, multiple: int = 8, max_len: int | None = None,
            exact: bool = False):
    """Pad the sequences of ``index`` to the batch's longest (rounded up to ``multiple``).

    Returns (ids (B, L) int64, target_mask (B, L) bool, real (B, L) bool: the sequence's own
    positions, not batch padding); vectorised, no loop per sequence. The padding counts as
    target (the official layout: the model ends a target with [PAD]) unless ``exact``, where
    the target part is the target's own tokens alone.
    """
    index = np.asarray(index, dtype=np.int64)
    starts = data.offsets[index]  # (B,)
    lens = data.offsets[index + 1] - starts  # (B,)
    L = int(lens.max())
    L = -(-L // multiple) * multiple
    if max_len is not None:
        L = min(L, max_len)
    pos = np.arange(L)[None, :]  # (1, L)
    inside = pos < lens[:, None]  # (B, L)
    gather = np.where(inside, starts[:, None] + pos, 0)
    ids = np.where(inside, data.ids[gather], pad_id).astype(np.int64)
    mask = pos >= data.n_src[index][:, None]  # (B, L): False on the source part
    if exact:
        mask &= inside
    return ids, mask, inside
