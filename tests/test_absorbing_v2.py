"""DiffuSeq-v2's absorbing state as published (`train --absorbing-kind v2`) and the re-masking
schedules (`generate --remask-schedule`, `--remask-repeats`): the forward process has the
published marginals, sampling is centred on the state, re-masking picks what it should."""

from __future__ import annotations

import pytest
import torch

from diffuseq_cli.config import DiffusionConfig, preset
from diffuseq_cli.core.diffusion import V2_STATE_PENALTY, Diffusion, absorbing_positions
from diffuseq_cli.core.remasking import Remasking, repeated_words
from diffuseq_cli.core.samplers import DDIMSampler, DPMSolverPP
from diffuseq_cli.core.sampling import sample_loop, start_from_noise

T = 100


class _Spy(torch.nn.Module):
    """Records the z_t the denoiser sees and returns zeros (a z_0 estimate of 0)."""

    def __init__(self, d=4, V=12):
        super().__init__()
        self.config = preset("tiny", V, max_positions=16, embed_dim=d, absorbing_state=True)
        self.word_embedding = torch.nn.Embedding(V, d)
        self.lm_head_bias = torch.nn.Parameter(torch.zeros(V))
        self.absorbing_state = torch.nn.Parameter(torch.full((d,), 3.0))
        self.seen = []

    def embed(self, ids):
        return self.word_embedding(ids)

    def logits(self, z):
        return torch.nn.functional.linear(z, self.word_embedding.weight, self.lm_head_bias)

    def forward(self, z, t, self_cond=None, target_mask=None, key_mask=None):
        self.seen.append(z.detach().clone())
        return torch.zeros_like(z)


def test_v2_absorption_probability_follows_the_noise_level():
    diff = Diffusion(DiffusionConfig(steps=T, absorbing=0.5, absorbing_kind="v2"))
    ours = Diffusion(DiffusionConfig(steps=T, absorbing=0.5))
    t = torch.tensor([0, 10, 50, 99])
    expected = 0.5 * torch.sqrt(1 - diff.alphas_cumprod[t]).float()
    assert torch.allclose(diff.absorb_probability(t, 0.5), expected)
    assert torch.allclose(ours.absorb_probability(t, 0.5), 0.5 * (t.float() + 1) / T)
    # the drawn share matches it, on the target only
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(4, 20000, dtype=torch.bool)
    mask[:, 5000:] = True
    picked = absorbing_positions(torch.rand(4, 20000, generator=g), diff.absorb_probability(t, 0.5), mask)
    assert not picked[:, :5000].any()
    assert torch.allclose(picked[:, 5000:].float().mean(1), expected, atol=0.01)


def test_v2_forward_process_is_centred_on_the_state_and_absorbed_words_hold_it_clean():
    diff = Diffusion(DiffusionConfig(steps=T, absorbing=0.5, absorbing_kind="v2"))
    model = _Spy()
    B, L, d = 3, 8, 4
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 12, (B, L), generator=g)
    mask = torch.zeros(B, L, dtype=torch.bool)
    mask[:, 3:] = True
    absorb = torch.zeros_like(mask)
    absorb[:, 6] = True
    absorb[:, 1] = True  # source: ignored
    t = torch.tensor([0, 40, 99])
    eps0, noise = torch.randn(B, L, d, generator=g), torch.randn(B, L, d, generator=g)
    losses = diff.training_losses(model, ids, mask, t, eps0, noise, absorb=absorb)
    zt = model.seen[-1]
    m = model.absorbing_state.detach()
    z0 = model.embed(ids).detach() + diff.embed_noise_std() * eps0
    a = diff.alphas_cumprod[t].float()[:, None, None]
    centred = a.sqrt() * (z0 - m) + (1 - a).sqrt() * noise + m
    assert torch.allclose(zt[:, 3:6], centred[:, 3:6], atol=1e-5)
    assert torch.allclose(zt[:, 7:], centred[:, 7:], atol=1e-5)
    assert torch.equal(zt[:, 6], m.expand(B, d))  # absorbed: m itself, no noise
    assert torch.allclose(zt[:, :3], z0[:, :3], atol=1e-6)  # the source is anchored
    # the prior term measures the distance from m at t = T, and the state's norm is penalised
    ac_T = diff.alphas_cumprod[T - 1].float()
    prior = ((ac_T.sqrt() * (z0 - m)) ** 2 * mask[..., None]).sum((1, 2)) / (mask.sum(1) * d)
    assert torch.allclose(losses.prior, prior, atol=1e-6)
    assert torch.allclose(losses.loss, losses.mse + losses.rounding + losses.prior + V2_STATE_PENALTY * m.norm(), atol=1e-5)


def test_v2_sampling_starts_at_the_state_and_steps_the_centred_process():
    diff = Diffusion(DiffusionConfig(steps=T, absorbing=0.5, absorbing_kind="v2"))
    model = _Spy()
    m = model.absorbing_state.detach()
    noise = torch.randn(1, 6, 4, generator=torch.Generator().manual_seed(2))
    z_T = start_from_noise(model, diff, noise, T - 1)
    assert torch.allclose(z_T, m + float(diff.sqrt_one_minus_ac[T - 1]) * noise)
    plain = start_from_noise(_Spy(), Diffusion(DiffusionConfig(steps=T)), noise, T - 1)
    assert torch.equal(plain, noise)  # other models start from the noise itself
    mask = torch.zeros(1, 6, dtype=torch.bool)
    mask[:, 2:] = True
    steps = [99, 50]
    sample_loop(model, diff, z_T, torch.zeros_like(z_T), mask, steps, DDIMSampler(), rounding="none")
    # DDIM (eta 0) on the process of z - m, with the spy's z_0 estimate of 0 (that is, -m from m)
    a99, a50 = (float(diff.alphas_cumprod[s]) for s in steps)
    eps = (z_T - m - a99**0.5 * -m) / (1 - a99) ** 0.5
    expected = m + a50**0.5 * -m + (1 - a50) ** 0.5 * eps
    assert torch.allclose(model.seen[1][:, 2:], expected[:, 2:], atol=1e-5)


def test_v2_dpm_solver_steps_the_centred_process():
    diff = Diffusion(DiffusionConfig(steps=T, absorbing=0.5, absorbing_kind="v2"))
    model = _Spy()
    m = model.absorbing_state.detach()
    z_T = start_from_noise(model, diff, torch.randn(1, 6, 4, generator=torch.Generator().manual_seed(4)), T - 1)
    mask = torch.zeros(1, 6, dtype=torch.bool)
    mask[:, 2:] = True
    steps = [99, 60, 30, 0]
    sample_loop(model, diff, z_T, torch.zeros_like(z_T), mask, steps, DPMSolverPP(), rounding="none")
    # The same solver on z - m, by hand: the spy's estimate 0 is -m in the centred process.
    solver, z = DPMSolverPP(), z_T - m
    for i, t in enumerate(steps[:-1]):
        z = solver.step(-m.expand_as(z), z, diff.alphas_cumprod[t].float(), diff.alphas_cumprod[steps[i + 1]].float())
        assert torch.allclose(model.seen[i + 1][:, 2:], (z + m)[:, 2:], atol=1e-5)


def test_v2_remasking_puts_the_state_itself_back():
    diff = Diffusion(DiffusionConfig(steps=T, absorbing=1.0, absorbing_kind="v2"))
    model = _Spy()
    m = model.absorbing_state.detach()
    z_T = torch.randn(1, 6, 4, generator=torch.Generator().manual_seed(3))
    mask = torch.zeros(1, 6, dtype=torch.bool)
    mask[:, 2:] = True
    sample_loop(model, diff, z_T, torch.zeros_like(z_T), mask, [99, 98, 0], DDIMSampler(), rounding="logits",
                remask=Remasking(1.0, "linear"))
    # linear schedule at t_prev = 98: round(0.99 · 4) = 4 words re-masked, all of them m exactly
    assert torch.equal(model.seen[1][0, 2:], m.expand(4, 4))


def test_linear_schedule_decays_from_all_to_none():
    diff = Diffusion(DiffusionConfig(steps=T, absorbing=0.5))
    lin = Remasking(0.5, "linear")
    assert lin.share_at(diff, T - 1) == 1.0 and lin.share_at(diff, 49) == 0.5 and lin.share_at(diff, 0) == 1 / T
    assert Remasking(0.5).share_at(diff, 49) == pytest.approx(0.25)  # trained: the share training absorbed
    with pytest.raises(ValueError, match="schedule"):
        Remasking(0.5, "cosine")


def test_repeats_are_always_remasked():
    words = torch.tensor([[7, 7, 3, 3, 3, 5, 2], [1, 1, 4, 6, 6, 9, 9]])
    mask = torch.tensor([[False, False, True, True, True, True, True], [False, True, True, True, True, True, True]])
    rep = repeated_words(words, mask)
    # row 0: the source pair (7, 7) does not count; 3 3 3 -> the 2nd and 3rd
    # row 1: 1 1 straddles source and target: not a target repeat; 6 6 and 9 9 count
    assert rep.tolist() == [[False, False, False, True, True, False, False],
                            [False, False, False, False, True, False, True]]
    diff = Diffusion(DiffusionConfig(steps=T, absorbing=0.5))
    conf = torch.linspace(0.9, 0.1, 7).expand(2, 7).contiguous()  # the last positions are least confident
    picked = Remasking(0.0, repeats=True).pick(diff, 0, conf, words, mask)
    assert picked.equal(rep)  # share 0 at t = 0 (trained schedule): only the repeats
    both = Remasking(0.5, "linear", repeats=True).pick(diff, 49, conf, words, mask)
    assert (both >= rep).all() and both.sum() > rep.sum()


def test_v2_model_trains_and_samples_end_to_end(tmp_path, tokenizer_file):
    from diffuseq_cli.api import DiffuSeq
    from diffuseq_cli.modelfiles.folder import load_model_folder

    from helpers_models import train_tiny_fast

    result = train_tiny_fast(tmp_path / "run", tokenizer_file, absorbing_kind="v2", regions="exact", steps=2)
    loaded = load_model_folder(result.last_checkpoint)
    assert loaded.config.diffusion.absorbing_kind == "v2"
    out = DiffuSeq(loaded).generate(["how do i learn python?"], num_samples=2, steps=4, remask_repeats=True,
                                    remask_schedule="linear")
    assert len(out[0]) == 2
