"""Where the shared data and fixtures live (``../shared`` beside the repository)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures"
OFFICIAL_TINY = FIXTURES / "official-tiny"
QQP_VALID = SHARED / "data" / "QQP" / "valid.jsonl"
BERT_VOCAB = SHARED / "tokenizers" / "bert-base-uncased" / "vocab.txt"
