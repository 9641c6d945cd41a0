"""The diffusion math that can go wrong: schedules, partial noising, samplers, rounding."""

import math

import numpy as np
import pytest
import torch

from diffuseq_cli.config import DiffusionConfig
from diffuseq_cli.core import schedule
from diffuseq_cli.core.diffusion import Diffusion
from diffuseq_cli.core.rounding import expected_embedding, round_to_embeddings
from diffuseq_cli.core.samplers import DDIMSampler, DDPMSampler
from diffuseq_cli.core.sampling import sample_loop, step_schedule
from diffuseq_cli.core.timesteps import LossAwareTimesteps


@pytest.mark.parametrize("T", [50, 2000])
def test_sqrt_schedule_matches_the_formula(T):
    # ᾱ(s) = 1 - sqrt(s + 1e-4); the cumulative product telescopes to ᾱ((t+1)/T) / ᾱ(0) while β < 0.999.
    ac = schedule.alphas_cumprod("sqrt", T)
    f = lambda s: 1 - math.sqrt(s + 0.0001)  # noqa: E731
    expected = np.array([f((t + 1) / T) / f(0) for t in range(T)])
    unclipped = schedule.betas("sqrt", T) < schedule.MAX_BETA
    assert np.allclose(ac[unclipped], expected[unclipped], rtol=1e-10, atol=1e-12)
    assert np.all(np.diff(ac) < 0) and 0 < ac[-1] < 1e-3


def test_linear_and_cosine_schedules():
    T = 100
    betas = np.linspace(10 * 0.0001, 10 * 0.02, T)
    assert np.allclose(schedule.alphas_cumprod("linear", T), np.cumprod(1 - betas))
    cos = schedule.alphas_cumprod("cosine", T)
    f = lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert cos[10] == pytest.approx(f(11 / T) / f(0), rel=1e-9)
    with pytest.raises(ValueError):
        schedule.betas("nope", 10)


def test_partial_noising_leaves_source_bit_identical():
    d = Diffusion(DiffusionConfig(steps=100))
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(3, 12, 8, generator=g)
    noise = torch.randn(3, 12, 8, generator=g)
    mask = torch.zeros(3, 12, dtype=torch.bool)
    mask[:, 5:] = True
    t = torch.tensor([0, 50, 99])
    zt = d.q_sample(z0, t, noise, mask)
    assert torch.equal(zt[:, :5], z0[:, :5])
    expected = d.sqrt_ac[t].float()[:, None, None] * z0 + d.sqrt_one_minus_ac[t].float()[:, None, None] * noise
    assert torch.allclose(zt[:, 5:], expected[:, 5:])
    assert not torch.allclose(zt[:, 5:], z0[:, 5:])


def test_step_schedule_visits_ends_and_is_descending():
    assert step_schedule(5, 5) == [4, 3, 2, 1, 0]
    s = step_schedule(20, 2000)
    assert s[0] == 1999 and s[-1] == 0 and len(s) == 20 and s == sorted(s, reverse=True)
    with pytest.raises(ValueError):
        step_schedule(0, 10)
    with pytest.raises(ValueError):
        step_schedule(11, 10)


def _posterior_ancestral(z0, zt, t, betas, ac, noise):
    """Paper eq. 14 with the schedule's own β_t and ᾱ, written independently of the sampler."""
    a_t, beta = ac[t], betas[t]
    a_prev = ac[t - 1] if t > 0 else 1.0
    mean = math.sqrt(a_prev) * beta / (1 - a_t) * z0 + math.sqrt(1 - beta) * (1 - a_prev) / (1 - a_t) * zt
    var = beta * (1 - a_prev) / (1 - a_t)
    return mean + (math.sqrt(var) * noise if t > 0 else 0)


def test_full_step_samplers_equal_the_ancestral_definition():
    T = 30
    ac = schedule.alphas_cumprod("sqrt", T)
    betas = schedule.betas("sqrt", T)
    g = torch.Generator().manual_seed(1)
    z0, zt = torch.randn(2, 4, 3, dtype=torch.float64, generator=g), torch.randn(2, 4, 3, dtype=torch.float64, generator=g)
    noise = torch.randn(2, 4, 3, dtype=torch.float64, generator=g)
    for t in [T - 1, 10, 1, 0]:
        a_t = torch.tensor(ac[t], dtype=torch.float64)
        a_prev = torch.tensor(ac[t - 1] if t > 0 else 1.0, dtype=torch.float64)
        expected = _posterior_ancestral(z0, zt, t, betas, ac, noise)
        ddpm = DDPMSampler("small").step(z0, zt, a_t, a_prev, noise)
        ddim_eta1 = DDIMSampler(eta=1.0).step(z0, zt, a_t, a_prev, noise if t > 0 else None)
        assert torch.allclose(ddpm, expected, atol=1e-10)
        assert torch.allclose(ddim_eta1, expected, atol=1e-10)


class _ConstModel(torch.nn.Module):
    """Predicts a fixed z_0; enough to see which ᾱ a sampler uses."""

    def __init__(self, z0, vocab=5):
        super().__init__()
        self.z0 = z0
        self.word_embedding = torch.nn.Embedding(vocab, z0.shape[-1])
        self.config = type("C", (), {"self_condition": False})()

    def forward(self, z, t, self_cond=None, target_mask=None):
        return self.z0.expand_as(z)

    def logits(self, z):
        return z @ self.word_embedding.weight.T


class _Recorder(DDIMSampler):
    def __init__(self):
        super().__init__(0.0)
        self.seen = []

    def step(self, z0, zt, a_t, a_prev, noise):
        self.seen.append((float(a_t), float(a_prev)))
        return super().step(z0, zt, a_t, a_prev, noise)


def test_ddim_subset_uses_the_visited_steps_alphas():
    T = 100
    diff = Diffusion(DiffusionConfig(steps=T))
    ac = diff.alphas_cumprod.numpy()
    steps = step_schedule(7, T)
    z0 = torch.randn(1, 1, 4, dtype=torch.float64)
    model = _ConstModel(z0).double()
    rec = _Recorder()
    mask = torch.ones(1, 6, dtype=torch.bool)
    z_T = torch.randn(1, 6, 4, dtype=torch.float64)
    out = sample_loop(model, diff, z_T, torch.zeros_like(z_T), mask, steps, rec, rounding=False)
    expected = [(ac[s], ac[steps[i + 1]] if i + 1 < len(steps) else 1.0) for i, s in enumerate(steps)]
    assert np.allclose(rec.seen, expected, rtol=1e-12)
    # With a constant z_0 estimate, deterministic DDIM lands exactly on it after the last step.
    assert torch.allclose(out.sample, z0.expand_as(out.sample), atol=1e-9)


def test_anchoring_keeps_the_source_embedding():
    diff = Diffusion(DiffusionConfig(steps=10))
    model = _ConstModel(torch.ones(1, 1, 4))
    src = torch.full((1, 6, 4), 3.0)
    mask = torch.tensor([[False, False, True, True, True, True]])
    out = sample_loop(model, diff, torch.randn(1, 6, 4), src, mask, step_schedule(10, 10), DDIMSampler(), rounding=False)
    assert torch.equal(out.sample[:, :2], src[:, :2])
    assert torch.allclose(out.sample[:, 2:], torch.ones(1, 4, 4), atol=1e-5)


def test_rounding_returns_nearest_embedding_rows():
    g = torch.Generator().manual_seed(2)
    table = torch.randn(50, 8, generator=g)
    z = torch.randn(3, 7, 8, generator=g)
    rows, ids = round_to_embeddings(z, table)
    brute = torch.cdist(z.reshape(-1, 8), table).argmin(-1).view(3, 7)
    assert torch.equal(ids, brute)
    assert torch.equal(rows, table[ids])
    # with the head's bias: the argmax of z·e + b (rounding="logits"), blocked the same way
    bias = torch.randn(50, generator=g) * 3
    z = torch.randn(2, 300, 8, generator=g)  # several row blocks
    rows, ids = round_to_embeddings(z, table, bias)
    assert torch.equal(ids, (z @ table.T + bias).argmax(-1))
    assert not torch.equal(ids, torch.cdist(z.reshape(-1, 8), table).argmin(-1).view(2, 300))
    # soft rounding: Σ_w p(w | z) EMB(w), in the same blocks
    soft = expected_embedding(z, table, bias)
    assert torch.allclose(soft, torch.softmax(z @ table.T + bias, -1) @ table, atol=1e-5)


def test_loss_aware_sampler_is_uniform_then_importance_weighted():
    s = LossAwareTimesteps(4, history=2, uniform_prob=0.0)
    assert np.allclose(s.weights(), 1.0)
    s.update([0, 1, 2, 3, 0, 1, 2, 3], [1, 1, 1, 1, 1, 1, 3, 3])
    w = s.weights()
    rms = np.array([1, 1, math.sqrt(5), math.sqrt(5)])  # sqrt(E[L²]) of the histories [1, 1] and [1, 3]
    assert np.allclose(w, rms / rms.sum())
    t, weight = s.sample(1000, torch.Generator().manual_seed(0))
    assert torch.allclose(weight, 1.0 / (4 * torch.from_numpy(w)[t]).float())
    restored = LossAwareTimesteps(4, history=2, uniform_prob=0.0)
    restored.load_state_dict(s.state_dict())
    assert np.array_equal(restored.weights(), w)


def test_non_adaptive_sampler_stays_uniform():
    s = LossAwareTimesteps(4, history=2, uniform_prob=0.0, adaptive=False)
    s.update([0, 1, 2, 3, 0, 1, 2, 3], [1, 1, 1, 9, 1, 1, 1, 9])
    assert np.allclose(s.weights(), 1.0)
    t, weight = s.sample(100, torch.Generator().manual_seed(0))
    assert torch.allclose(weight, torch.ones(100))
