"""Parity with the official DiffuSeq code on fixtures/official-tiny (DESIGN.md section 4)."""

import pytest
import torch

from diffuseq_cli import DiffuSeq
from diffuseq_cli.modelfiles.official import convert_state, load_official_state

from paths import OFFICIAL_TINY, require_shared

require_shared(module=True)


@pytest.fixture(scope="module")
def vocab60(tmp_path_factory):
    """A 60-token WordPiece vocabulary matching the fixture's vocabulary size."""
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [f"w{i}" for i in range(56)]
    path.write_text("\n".join(words) + "\n")
    return path


@pytest.fixture(scope="module")
def model(vocab60):
    return DiffuSeq.from_pretrained(OFFICIAL_TINY / "ema_0.9999_000100.pt", tokenizer=vocab60, num_heads=4)


def test_sizes_are_inferred_from_tensors(model):
    m = model.config.model
    assert (m.vocab_size, m.embed_dim, m.hidden_size, m.num_layers, m.ffn_size, m.time_embed_dim) == (60, 16, 64, 2, 256, 16)
    assert model.config.diffusion.steps == 50


def test_denoiser_matches_official_forward(model):
    ref = torch.load(OFFICIAL_TINY / "forward.pt", weights_only=True)
    with torch.no_grad():
        out = model.model(ref["x"], ref["timesteps"])  # timesteps are already rescaled in the fixture
        logits = model.model.logits(out)
    assert torch.allclose(out, ref["output"], atol=1e-5, rtol=0)
    assert torch.allclose(logits, ref["logits"], atol=1e-5, rtol=0)


def test_ddim_sampler_reproduces_official_run(model):
    ref = torch.load(OFFICIAL_TINY / "ddim_sample.pt", weights_only=True)
    assert torch.allclose(model.diffusion.alphas_cumprod, ref["alphas_cumprod"], atol=1e-12, rtol=0)
    out = model.sample(ref["x_T"], ref["input_ids"], ref["input_mask"], steps=50, sampler="ddim", eta=0.0)
    assert torch.allclose(out.sample, ref["final_sample"], atol=1e-4, rtol=0)
    assert torch.equal(out.tokens, ref["tokens"])


def test_importer_takes_lm_head_as_the_tied_table():
    state = load_official_state(OFFICIAL_TINY / "ema_0.9999_000100.pt")
    state = dict(state)
    state["word_embedding.weight"] = state["word_embedding.weight"] + 1.0  # the EMA copy differs in real checkpoints
    with pytest.warns(UserWarning, match="lm_head.weight"):
        _, ours = convert_state(state, num_heads=4)
    assert torch.equal(ours["word_embedding.weight"], state["lm_head.weight"])
