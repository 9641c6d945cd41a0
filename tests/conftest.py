"""Fixtures every test module shares."""

import pytest
import torch

from diffuseq_cli.modelfiles.tokenizer import train_bpe
from diffuseq_cli.training.data import read_pairs

from paths import QQP_VALID, SKIP_REASON, have_shared, in_ci, require_shared


@pytest.fixture(autouse=True)
def one_thread():
    """Two busy shared cores: one intra-op thread is far faster (and steadier) than two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shared_data():
    """The shared data and fixtures (``../shared``): a test that uses them skips without them (fails in CI)."""
    require_shared()


@pytest.fixture(scope="session")
def tokenizer_file(shared_data, tmp_path_factory):
    """A 500-token BPE trained on QQP valid, saved as tokenizer.json."""
    texts = [t for src, trg, _ in read_pairs(QQP_VALID) for t in (src, trg)]
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_bpe(texts, vocab_size=500).save(path)
    return str(path)


def pytest_terminal_summary(terminalreporter):
    """One line that says why so many tests skipped, where they did."""
    if not have_shared() and not in_ci():
        terminalreporter.write_line(f"skipped tests: {SKIP_REASON} (README.md, 'Run the tests')")
