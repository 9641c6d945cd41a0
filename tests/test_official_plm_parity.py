"""Parity with the official code's ``--use_plm_init bert`` model (fixtures/official-plm-tiny): a
checkpoint initialised from a BERT folder, converted by ``diffuseq convert``, gives the official
denoiser's output. Its layout differs from official-tiny's: embedding and hidden size are equal
(64), so the official model has no up/down projections, and its time embedding is 64 wide."""

import json
import subprocess
import sys

import pytest
import torch

from diffuseq_cli.modelfiles.folder import load_model_folder

from paths import FIXTURES, require_shared

require_shared(module=True)

PLM = FIXTURES / "official-plm-tiny"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("plm") / "converted"
    heads = json.loads((PLM / "expected.json").read_text())["heads"]
    r = subprocess.run([sys.executable, "-m", "diffuseq_cli", "convert", str(PLM / "ema_0.9999_000000.pt"),
                        "--tokenizer", str(PLM / "bert" / "vocab.txt"), "--heads", str(heads), "-o", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return load_model_folder(out)


def test_sizes_come_from_the_checkpoint(converted):
    m = converted.config.model
    assert (m.vocab_size, m.embed_dim, m.hidden_size, m.num_layers, m.num_heads, m.ffn_size, m.time_embed_dim) == (
        82, 64, 64, 2, 4, 256, 64)
    assert converted.config.diffusion.steps == 50 and converted.config.sequence.seq_len == 32


def test_converted_model_matches_the_official_forward(converted):
    ref = torch.load(PLM / "forward.pt", weights_only=True)
    with torch.no_grad():
        out = converted.model(ref["x"], ref["t_model"])  # t_model: the timesteps as the official model receives them
    assert out.shape == ref["out"].shape
    gap = float((out - ref["out"]).abs().max())
    assert gap <= 1e-5, gap  # fp32 rounding (measured 2.3e-6 with one thread), against outputs of size ~4
    assert float(ref["out"].abs().max()) > 1.0  # the comparison is not of near-zero tensors


def test_the_tied_table_is_the_checkpoints_lm_head(converted):
    state = torch.load(PLM / "ema_0.9999_000000.pt", weights_only=True)
    assert torch.equal(converted.model.word_embedding.weight, state["lm_head.weight"])
    assert torch.equal(converted.model.lm_head_bias, state["lm_head.bias"])
