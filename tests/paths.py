"""Where the shared data and fixtures live (``../shared`` beside the repository), and what a test
that needs them does when they are not there.

A clone on its own has no ``../shared``: the tests that need it skip, with one reason, and the
rest run. In CI (``CI=true``) the folder is part of the set-up, so its absence is a wrong path:
those tests fail instead of skipping, so that CI cannot pass by testing less.
"""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures"
OFFICIAL_TINY = FIXTURES / "official-tiny"
QQP_VALID = SHARED / "data" / "QQP" / "valid.jsonl"
BERT_VOCAB = SHARED / "tokenizers" / "bert-base-uncased" / "vocab.txt"

SKIP_REASON = f"needs the shared data and fixtures, not found at {SHARED}"


def in_ci() -> bool:
    """``CI=true`` (or 1, yes), as CI services set it."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def have_shared() -> bool:
    return SHARED.is_dir()


def require_shared(module: bool = False) -> None:
    """Skip the calling test (``module=True``: the whole module, at import) when ``../shared`` is
    missing; in CI, fail instead."""
    if have_shared():
        return
    if in_ci():
        pytest.fail(f"CI=true, but the shared data and fixtures are missing at {SHARED}", pytrace=False)
    pytest.skip(SKIP_REASON, allow_module_level=module)


needs_shared = pytest.mark.usefixtures("shared_data")  # for a test that reads ../shared in its body
