"""The token loss (the head's cross-entropy on the prediction), head-argmax rounding, and the
recipe settings that carry them from `diffuseq train` into a model folder and `generate`."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from diffuseq_cli.cli import main
from diffuseq_cli.config import DiffusionConfig, preset
from diffuseq_cli.core.diffusion import Diffusion
from diffuseq_cli.core.model import DiffuSeqTransformer
from diffuseq_cli.core.samplers import DDIMSampler
from diffuseq_cli.core.sampling import sample_loop
from diffuseq_cli.errors import UsageError
from diffuseq_cli.generation import SamplingConfig
from diffuseq_cli.modelfiles.folder import load_model_folder
from diffuseq_cli.training.config import RECIPES, with_recipe

from helpers_models import train_tiny_fast


def _batch(seed=0, B=3, L=10, V=30, d=8):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (B, L), generator=g)
    mask = torch.zeros(B, L, dtype=torch.bool)
    mask[:, 4:] = True
    mask[2, 8:] = False  # rows with different target lengths
    t = torch.tensor([0, 7, 19])
    eps0, noise = torch.randn(B, L, d, generator=g), torch.randn(B, L, d, generator=g)
    return ids, mask, t, eps0, noise


def _model(V=30, d=8):
    torch.manual_seed(0)
    return DiffuSeqTransformer(preset("tiny", V, max_positions=16, embed_dim=d)).eval()


def test_token_loss_is_the_heads_cross_entropy_on_the_prediction_over_target_positions():
    diff = Diffusion(DiffusionConfig(steps=20))
    model = _model()
    ids, mask, t, eps0, noise = _batch()
    plain = diff.training_losses(model, ids, mask, t, eps0, noise)
    assert torch.equal(plain.token, torch.zeros(3))
    weighted = diff.training_losses(model, ids, mask, t, eps0, noise, token_weight=0.5)
    # the paper's terms do not change; the token term is added with its weight
    assert torch.allclose(weighted.mse, plain.mse) and torch.allclose(weighted.rounding, plain.rounding)
    assert torch.allclose(weighted.loss, plain.loss + 0.5 * weighted.token)
    # by hand: rebuild z_t, run the model, average -log p(w | f(z_t, t)) over each row's target positions
    z0 = model.embed(ids) + diff.embed_noise_std() * eps0
    pred = model(diff.q_sample(z0, t, noise, mask), diff.model_time(t))
    ce = F.cross_entropy(model.logits(pred).transpose(1, 2), ids, reduction="none")
    expected = torch.stack([ce[b][mask[b]].mean() for b in range(3)])
    assert torch.allclose(weighted.token, expected, atol=1e-6)
    assert float(weighted.token.detach().min()) > 0


def test_token_loss_sends_gradient_through_the_denoiser():
    diff = Diffusion(DiffusionConfig(steps=20))
    model = _model().train()
    ids, mask, t, eps0, noise = _batch(1)
    losses = diff.training_losses(model, ids, mask, t, eps0, noise, token_weight=1.0)
    losses.token.sum().backward()
    assert float(model.blocks[-1].ffn_out.weight.grad.abs().sum()) > 0
    assert float(model.lm_head_bias.grad.abs().sum()) > 0


class _FixedPrediction(torch.nn.Module):
    """A denoiser whose z_0 estimate is fixed, with a head whose bias decides against the nearest row."""

    def __init__(self, z0, table, bias):
        super().__init__()
        self.z0 = z0
        self.word_embedding = torch.nn.Embedding.from_pretrained(table)
        self.lm_head_bias = bias
        self.config = type("C", (), {"self_condition": False})()

    def forward(self, z, t, self_cond=None, target_mask=None):
        return self.z0.expand_as(z)

    def logits(self, z):
        return z @ self.word_embedding.weight.T + self.lm_head_bias


@pytest.mark.parametrize("rounding,expected_row", [("l2", 0), (True, 0), ("logits", 1), ("soft", "soft"), ("none", None), (False, None)])
def test_sampling_rounds_by_nearest_row_or_by_the_heads_argmax(rounding, expected_row):
    table = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    z0 = torch.tensor([[[0.9, 0.3]]])  # nearest to row 0; the bias makes row 1 the head's choice
    model = _FixedPrediction(z0, table, bias=torch.tensor([0.0, 1.0, 0.0]))
    diff = Diffusion(DiffusionConfig(steps=4))
    mask = torch.ones(1, 1, dtype=torch.bool)
    # Deterministic DDIM's last step lands exactly on the (rounded) estimate.
    out = sample_loop(model, diff, torch.zeros(1, 1, 2), torch.zeros(1, 1, 2), mask, [3, 0], DDIMSampler(), rounding=rounding)
    bias = model.lm_head_bias
    if expected_row == "soft":  # the expected embedding under the head
        want = torch.softmax(z0[0, 0] @ table.T + bias, -1) @ table
    else:
        want = z0[0, 0] if expected_row is None else table[expected_row]
    assert torch.allclose(out.sample[0, 0], want, atol=1e-6)
    with pytest.raises(ValueError):
        sample_loop(model, diff, torch.zeros(1, 1, 2), torch.zeros(1, 1, 2), mask, [3, 0], DDIMSampler(), rounding="cosine")


def test_recipes_and_validation():
    assert RECIPES["paper"]["token_loss"] == 0 and RECIPES["paper"]["rounding"] == "l2"
    assert RECIPES["paper"]["dropout"] is None  # the preset's 0.1, as the paper
    fast = with_recipe("fast", data="x.jsonl")
    assert fast.token_loss > 0 and fast.rounding == "logits" and fast.dropout == 0.0 and fast.positions == "segment"
    assert RECIPES["paper"]["positions"] == "absolute"  # the official model's layout
    for bad in (dict(token_loss=-1.0), dict(dropout=1.0), dict(rounding="cosine")):
        with pytest.raises(UsageError):
            with_recipe("fast", data="x.jsonl", **bad)
    with pytest.raises(ValueError):
        DiffusionConfig(rounding="nearest")
    with pytest.raises(ValueError):
        SamplingConfig(rounding="nearest")


def test_trained_folder_keeps_rounding_and_dropout_and_generate_can_override(tmp_path, tokenizer_file, capsys):
    result = train_tiny_fast(tmp_path / "run", tokenizer_file, dropout=0.2, absorbing_kind="replace", regions="padded")
    loaded = load_model_folder(result.last_checkpoint)
    assert loaded.config.diffusion.rounding == "logits" and loaded.config.model.dropout == 0.2
    assert loaded.config.model.positions == "segment" and loaded.model.segment_embedding is not None
    # a folder an older (format 1) reader would sample differently is marked as format 2
    assert json.loads((result.last_checkpoint / "config.json").read_text())["format_version"] == 2
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["token_loss"] == RECIPES["fast"]["token_loss"] and saved["rounding"] == "logits"
    folder = str(result.last_checkpoint)
    src = tmp_path / "in.txt"
    src.write_text("how do i learn python?\nwhat is love?\n")
    capsys.readouterr()
    outs = {}
    for rounding in ("logits", None, "l2"):
        args = ["generate", "-m", folder, "-i", str(src), "--steps", "5", "-n", "2", "-q"]
        with pytest.raises(SystemExit) as exc:
            main(args + (["--rounding", rounding] if rounding else []))
        assert exc.value.code in (0, None)
        outs[rounding] = capsys.readouterr().out
        assert len(outs[rounding].splitlines()) == 4
    assert outs[None] == outs["logits"]  # the model's own rounding is the default
    assert outs["l2"] != outs["logits"]  # and --rounding reaches the sampler
    with pytest.raises(SystemExit) as exc:
        main(["generate", "-m", folder, "-i", str(src), "--rounding", "cosine"])
    assert exc.value.code == 2


# --- segment positions -----------------------------------------------------------------------------
def test_segment_positions_restart_at_the_target_and_need_the_mask():
    torch.manual_seed(0)
    model = DiffuSeqTransformer(preset("tiny", 30, max_positions=16, positions="segment")).eval()
    mask = torch.tensor([[False] * 4 + [True] * 6, [False] * 7 + [True] * 3])
    feats = model._positions(2, 10, mask)
    P, S = model.position_embedding.weight, model.segment_embedding.weight
    assert torch.allclose(feats[0, 2], P[2] + S[0]) and torch.allclose(feats[0, 4], P[0] + S[1])
    assert torch.allclose(feats[1, 9], P[2] + S[1]) and torch.allclose(feats[1, 6], P[6] + S[0])
    # target word j sees the same position as source word j, whatever the source length
    assert torch.allclose(feats[0, 4 + 1] - S[1], feats[1, 1] - S[0])
    with pytest.raises(ValueError, match="target_mask"):
        model(torch.randn(2, 10, 16), torch.zeros(2), None)


def test_absolute_positions_ignore_the_mask():
    torch.manual_seed(0)
    model = DiffuSeqTransformer(preset("tiny", 30, max_positions=16)).eval()
    z, t = torch.randn(2, 10, 16), torch.tensor([3.0, 9.0])
    mask = torch.rand(2, 10) > 0.5
    assert not hasattr(model, "segment_embedding")
    assert torch.equal(model(z, t, None, target_mask=mask), model(z, t, None))

