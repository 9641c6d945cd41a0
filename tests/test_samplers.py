"""DPM-Solver++(2M) (`generate --sampler dpm++`): exact where it must be, DDIM where it should be,
second order where DDIM is first, deterministic, and one registry entry that the loop runs unchanged."""

from __future__ import annotations

import pytest
import torch

from diffuseq_cli.config import SAMPLERS, DiffusionConfig
from diffuseq_cli.core import schedule
from diffuseq_cli.core.diffusion import Diffusion
from diffuseq_cli.core.samplers import SAMPLERS as REGISTRY
from diffuseq_cli.core.samplers import DDIMSampler, DPMSolverPP, make_sampler
from diffuseq_cli.core.sampling import sample_loop, step_schedule

T = 2000
AC = torch.tensor(schedule.alphas_cumprod("sqrt", T), dtype=torch.float64)


def _run(sampler, steps, z_T, denoise):
    """The steps' states from z_T (the last entry is the sample), with ``denoise(z, ᾱ)`` as the z_0 estimate."""
    run, z, states = sampler.start(), z_T, [z_T]
    for i, t in enumerate(steps):
        a, a_prev = AC[t], AC[steps[i + 1]] if i + 1 < len(steps) else torch.tensor(1.0, dtype=torch.float64)
        z = run.step(denoise(z, a), z, a, a_prev, None)
        states.append(z)
    return states


# A Gaussian data distribution z_0 ~ N(μ, s²): the exact denoiser and the exact probability-flow path are known.
MU, S = 0.7, 0.3


def _posterior_mean(z, a):
    return MU + (a.sqrt() * S * S / (a * S * S + 1 - a)) * (z - a.sqrt() * MU)


def _flow(u, a):
    """The probability-flow ODE's solution at ᾱ through the quantile u (it keeps u fixed)."""
    return a.sqrt() * MU + (a * S * S + 1 - a).sqrt() * u


def test_with_an_exact_z0_predictor_it_stays_on_the_path_and_lands_on_z0():
    g = torch.Generator().manual_seed(0)
    z0, eps = torch.randn(2, 5, 3, dtype=torch.float64, generator=g), torch.randn(2, 5, 3, dtype=torch.float64, generator=g)
    steps = step_schedule(6, T)
    states = _run(DPMSolverPP(), steps, AC[steps[0]].sqrt() * z0 + (1 - AC[steps[0]]).sqrt() * eps, lambda z, a: z0)
    for t, z in zip(steps[1:], states[1:-1]):  # every visited step: sqrt(ᾱ) z_0 + sqrt(1-ᾱ) ε, the same ε
        assert torch.allclose(z, AC[t].sqrt() * z0 + (1 - AC[t]).sqrt() * eps, atol=1e-12)
    assert torch.equal(states[-1], z0)


def test_one_step_and_first_order_are_ddim():
    g = torch.Generator().manual_seed(1)
    z_T = torch.randn(3, 4, dtype=torch.float64, generator=g)
    W = torch.randn(4, 4, dtype=torch.float64, generator=g) / 2
    denoise = lambda z, a: torch.tanh(z @ W) + 3 * a  # noqa: E731: an estimate that changes from step to step
    for steps in (step_schedule(1, T), step_schedule(7, T)):
        ddim = _run(DDIMSampler(), steps, z_T, denoise)
        first_order = _run(DPMSolverPP(order=1), steps, z_T, denoise)
        second_order = _run(DPMSolverPP(), steps, z_T, denoise)
        assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(ddim, first_order))
        assert torch.allclose(second_order[1], ddim[1], atol=1e-12)  # the first step has no history: DDIM's
        if len(steps) > 2:
            assert not torch.allclose(second_order[-1], ddim[-1], atol=1e-2)  # then it extrapolates


def test_it_is_second_order_where_ddim_is_first():
    u = torch.linspace(-2, 2, 9, dtype=torch.float64)

    def error(sampler, n):
        steps = step_schedule(n, T)
        states = _run(sampler, steps, _flow(u, AC[steps[0]]), _posterior_mean)
        return float((states[-2] - _flow(u, AC[steps[-1]])).abs().max())  # at t = 0, before the final rounding step

    for n in (5, 10, 20):
        assert error(DPMSolverPP(), n) < 0.6 * error(DDIMSampler(), n)
    # 2.5x the steps: the error of a second-order method falls by more than 2.5² (DDIM's by less than 2.5)
    assert error(DPMSolverPP(), 50) < error(DPMSolverPP(), 20) / 2.5**2
    assert error(DDIMSampler(), 50) > error(DDIMSampler(), 20) / 2.5


class _LinearModel(torch.nn.Module):
    """A z_0 estimate that depends on z_t and t, so a multistep sampler's memory matters."""

    def __init__(self, d=4, vocab=6):
        super().__init__()
        g = torch.Generator().manual_seed(5)
        self.w = torch.nn.Parameter(torch.randn(d, d, generator=g) / 2)
        self.word_embedding = torch.nn.Embedding(vocab, d)
        self.config = type("C", (), {"self_condition": False})()

    def forward(self, z, t, self_cond=None, target_mask=None):
        return torch.tanh(z @ self.w) * (1 + t[:, None, None] / 1000)

    def logits(self, z):
        return z @ self.word_embedding.weight.T


def test_deterministic_batch_invariant_and_one_object_serves_many_runs():
    diff = Diffusion(DiffusionConfig(steps=100))
    model = _LinearModel()
    g = torch.Generator().manual_seed(2)
    z_T = torch.randn(5, 6, 4, generator=g)
    mask = torch.ones(5, 6, dtype=torch.bool)
    mask[:, :2] = False
    src = torch.randn(5, 6, 4, generator=g)
    steps = step_schedule(5, 100)
    sampler = make_sampler("dpm++")
    whole = sample_loop(model, diff, z_T, src, mask, steps, sampler, rounding="none").sample
    again = sample_loop(model, diff, z_T, src, mask, steps, sampler, rounding="none").sample  # the same object
    assert torch.equal(whole, again)
    rows = [sample_loop(model, diff, z_T[i:i + 1], src[i:i + 1], mask[i:i + 1], steps, sampler, rounding="none").sample
            for i in range(5)]
    assert torch.allclose(torch.cat(rows), whole, atol=1e-6)
    ddim = sample_loop(model, diff, z_T, src, mask, steps, make_sampler("ddim"), rounding="none").sample
    assert not torch.allclose(whole, ddim, atol=1e-3)


def test_the_registry_holds_it_once_and_the_choices_list_it():
    assert set(REGISTRY) == set(SAMPLERS) and "dpm++" in SAMPLERS
    sampler = make_sampler("dpm++")
    assert isinstance(sampler, DPMSolverPP) and sampler.name == "dpm++" and not sampler.needs_noise
    with pytest.raises(ValueError):
        make_sampler("dpm")


def _folder_config(**decoding):
    from diffuseq_cli.config import DecodingConfig, ModelFolderConfig, preset

    return ModelFolderConfig(model=preset("tiny", 50), diffusion=DiffusionConfig(steps=200), decoding=DecodingConfig(**decoding))


@pytest.mark.parametrize("decoding,asked,expected", [
    ({}, {}, ("ddim", 20)),  # an older folder: today's default
    ({}, {"sampler": "ddpm"}, ("ddpm", 200)),
    ({}, {"sampler": "dpm++"}, ("dpm++", 10)),
    ({"sampler": "dpm++", "steps": 5}, {}, ("dpm++", 5)),  # the model's measured default
    ({"sampler": "dpm++", "steps": 5}, {"steps": 7}, ("dpm++", 7)),
    ({"sampler": "dpm++", "steps": 5}, {"sampler": "ddim"}, ("ddim", 20)),  # its steps were measured for dpm++
    ({"sampler": "dpm++", "steps": 500}, {}, ("dpm++", 200)),  # never past T
])
def test_the_models_decoding_chooses_the_sampler_and_its_steps(decoding, asked, expected):
    from diffuseq_cli.generation.config import SamplingConfig

    config, opts = _folder_config(**decoding), SamplingConfig(**asked)
    assert (opts.sampler_for(config), opts.steps_for(config)) == expected
    assert len(opts.visited_steps(config)) == expected[1]


def test_decoding_sampler_and_steps_are_checked_and_read_back():
    from diffuseq_cli.config import DecodingConfig, ModelFolderConfig

    with pytest.raises(ValueError, match="sampler"):
        DecodingConfig(sampler="euler")
    with pytest.raises(ValueError, match="steps"):
        DecodingConfig(steps=0)
    config = _folder_config(sampler="dpm++", steps=5)
    assert ModelFolderConfig.from_dict(config.to_dict()).decoding == config.decoding
    older = config.to_dict()
    del older["decoding"]["sampler"], older["decoding"]["steps"]
    assert ModelFolderConfig.from_dict(older).decoding.sampler == "ddim"
