"""Tokenizers: a BPE trained on the training data (the paper's choice), a saved ``tokenizer.json``,
or a WordPiece ``vocab.txt`` (bert-base-uncased, the vocabulary of official checkpoints).

Every tokenizer we use has the four special tokens the sequence layout needs:
[PAD], [UNK], [CLS], [SEP]. Encoding never adds specials (the packer does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from ..errors import DiffuseqError

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")


class TextTokenizer:
    """A thin wrapper over a ``tokenizers.Tokenizer`` that knows the special ids."""

    def __init__(self, tok: Tokenizer):
        self.tok = tok
        ids = {s: tok.token_to_id(s) for s in SPECIALS}
        missing = [s for s, i in ids.items() if i is None]
        if missing:
            raise DiffuseqError(f"tokenizer lacks the special tokens {', '.join(missing)}")
        self.pad_id, self.unk_id, self.cls_id, self.sep_id = (ids[s] for s in SPECIALS)
        self.special_ids = frozenset(ids.values())
        self._wordpiece = type(tok.decoder).__name__ == "WordPiece"

    def _until_end(self, seq: list[int]) -> list[int]:
        for pos, i in enumerate(seq):
            if pos > 0 and (i == self.sep_id or i == self.pad_id):
                return seq[:pos]
        return seq

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def is_word(self, word: str) -> bool:
        """Whether ``word`` is one token of the vocabulary (a word the model spells whole)."""
        ids = self.tok.encode(word, add_special_tokens=False).ids
        return len(ids) == 1 and ids[0] != self.unk_id

    def decode(self, seqs: list[list[int]], until_end: bool = False) -> list[str]:
        """Token ids -> text, special tokens and padding dropped.

        ``until_end``: a generated target is ``[CLS] y [SEP] [PAD]...``, so its text ends at
        the first [SEP] or [PAD]; whatever the model put after that is not part of ``y``.
        """
        if until_end:
            seqs = [self._until_end(s) for s in seqs]
        clean = [[i for i in s if i not in self.special_ids] for s in seqs]
        texts = [" ".join(t.split()) for t in self.tok.decode_batch(clean, skip_special_tokens=True)]
        if self._wordpiece:
            texts = [_join_contractions(t) for t in texts]
        return texts

    def save(self, path: Path) -> None:
        self.tok.save(str(path))

    def to_str(self) -> str:
        return self.tok.to_str()


# WordPiece splits "what's" into "what ' s"; the official decoding (a BERT tokenizer's decode
# with its default clean-up) joins these back. Same rules, so official numbers stay comparable.
_CONTRACTIONS = ((" ' ", "'"), (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


def _join_contractions(text: str) -> str:
    for old, new in _CONTRACTIONS:
        text = text.replace(old, new)
    return text


def train_bpe(texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2) -> TextTokenizer:
    """Train a byte-fallback-free BPE over whitespace-split text (Metaspace keeps spaces recoverable)."""
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIALS), show_progress=False
    )
    tok.train_from_iterator(_nonempty(texts), trainer=trainer)
    return TextTokenizer(tok)


def _nonempty(texts: Iterable[str]) -> Iterator[str]:
    for t in texts:
        if t:
            yield t


def load_tokenizer(path: str | Path, lowercase: bool = True) -> TextTokenizer:
    """Load ``tokenizer.json`` or a WordPiece ``vocab.txt`` (lower-cased, as bert-base-uncased, unless
    ``lowercase`` is False: a cased BERT's ``tokenizer_config.json`` says ``do_lower_case: false``)."""
    path = Path(path)
    if path.is_dir():
        for name in ("tokenizer.json", "vocab.txt"):
            if (path / name).exists():
                path = path / name
                break
    if not path.exists():
        raise DiffuseqError(f"tokenizer file not found: {path}")
    try:
        if path.suffix == ".json":
            return TextTokenizer(Tokenizer.from_file(str(path)))
        return TextTokenizer(_wordpiece(path, lowercase))
    except DiffuseqError:
        raise
    except Exception as exc:  # the tokenizers library raises plain Exceptions for corrupt files
        raise DiffuseqError(f"{path}: cannot read tokenizer ({exc})") from None


def _wordpiece(vocab_txt: Path, lowercase: bool = True) -> Tokenizer:
    vocab = {}
    with open(vocab_txt, encoding="utf-8") as f:
        for i, line in enumerate(f):
            vocab[line.rstrip("\n")] = i
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok


def tokenizer_from_str(text: str) -> TextTokenizer:
    return TextTokenizer(Tokenizer.from_str(text))
