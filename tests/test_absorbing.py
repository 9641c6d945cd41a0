"""The learned soft absorbing state (`diffuseq train --absorbing`, DiffuSeq-v2's discrete noise):
which tokens take it, what the model sees, what it is asked for, and how it reaches a model folder."""

from __future__ import annotations

import json

import pytest
import torch

from diffuseq_cli.api import DiffuSeq
from diffuseq_cli.cli import main
from diffuseq_cli.config import DiffusionConfig, preset
from diffuseq_cli.core.diffusion import Diffusion, absorbing_positions
from diffuseq_cli.core.model import DiffuSeqTransformer
from diffuseq_cli.core.remasking import least_confident
from diffuseq_cli.core.samplers import DDIMSampler
from diffuseq_cli.core.sampling import sample_loop, step_schedule
from diffuseq_cli.errors import UsageError
from diffuseq_cli.generation import collapse_repeats
from diffuseq_cli.modelfiles.folder import load_model_folder
from diffuseq_cli.training.config import RECIPES, TrainConfig, read_config_file, with_recipe

from helpers_models import train_tiny_fast
from paths import needs_shared


def _model(V=30, d=8):
    torch.manual_seed(0)
    return DiffuSeqTransformer(preset("tiny", V, max_positions=16, embed_dim=d, absorbing_state=True)).eval()


def _batch(seed=0, B=3, L=10, V=30, d=8):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (B, L), generator=g)
    mask = torch.zeros(B, L, dtype=torch.bool)
    mask[:, 4:] = True
    t = torch.tensor([0, 7, 19])
    return ids, mask, t, torch.randn(B, L, d, generator=g), torch.randn(B, L, d, generator=g)


def test_share_grows_linearly_with_t_and_stays_on_the_target():
    g = torch.Generator().manual_seed(0)
    B, L, T = 4, 4000, 100
    mask = torch.zeros(B, L, dtype=torch.bool)
    mask[:, 1000:] = True
    u = torch.rand(B, L, generator=g)
    t = torch.tensor([0, 49, 99, 99])
    diff = Diffusion(DiffusionConfig(steps=T))

    def absorbed(t, share):
        return absorbing_positions(u, diff.absorb_probability(t, share), mask)

    picked = absorbed(t, 0.5)
    assert not picked[:, :1000].any()  # the source is never touched
    rates = picked[:, 1000:].float().mean(dim=1)
    expected = torch.tensor([0.005, 0.25, 0.5, 0.5])
    assert torch.allclose(rates, expected, atol=0.03), rates
    assert picked[2:].sum() > 0 and not absorbed(t, 0.0).any()
    assert absorbed(torch.full((B,), T - 1), 1.0).equal(mask)  # share 1 at t=T: all of it


def test_absorbed_tokens_enter_as_the_state_and_are_still_asked_for_the_true_words():
    diff = Diffusion(DiffusionConfig(steps=20))
    model = _model()
    ids, mask, t, eps0, noise = _batch()
    plain = diff.training_losses(model, ids, mask, t, eps0, noise, token_weight=1.0)
    none = diff.training_losses(model, ids, mask, t, eps0, noise, token_weight=1.0, absorb=torch.zeros_like(mask))
    assert torch.allclose(none.loss, plain.loss)
    absorb = torch.zeros_like(mask)
    absorb[:, 5] = True
    absorb[:, 0] = True  # a source position: ignored
    got = diff.training_losses(model, ids, mask, t, eps0, noise, token_weight=1.0, absorb=absorb)
    # by hand: position 5 of every row starts from the state (with the embedding step's noise)
    sigma = diff.embed_noise_std()
    z0 = model.embed(ids) + sigma * eps0
    z_in = z0.clone()
    z_in[:, 5] = model.absorbing_state + sigma * eps0[:, 5]
    pred = model(diff.q_sample(z_in, t, noise, mask), diff.model_time(t), target_mask=mask)
    target = torch.where((t == 0)[:, None, None], model.embed(ids), z0)  # the true words, as without absorbing
    m = mask[..., None].float()
    mse = (((pred - target) ** 2) * m).sum(dim=(1, 2)) / (m.sum(dim=(1, 2)) * z0.shape[-1])
    assert torch.allclose(got.mse, mse, atol=1e-6)
    assert not torch.allclose(got.mse, plain.mse)
    assert torch.allclose(got.rounding, plain.rounding)  # the rounding term reads the clean z_0


def test_the_state_learns_through_the_loss():
    diff = Diffusion(DiffusionConfig(steps=20))
    model = _model().train()
    ids, mask, t, eps0, noise = _batch()
    absorb = mask.clone()
    diff.training_losses(model, ids, mask, t, eps0, noise, token_weight=1.0, absorb=absorb).loss.sum().backward()
    assert model.absorbing_state.grad is not None and float(model.absorbing_state.grad.abs().sum()) > 0


def test_option_is_checked_and_in_the_fast_recipe_only(tmp_path):
    assert RECIPES["paper"]["absorbing"] == 0 and RECIPES["fast"]["absorbing"] == 0.5
    assert TrainConfig(data="x.jsonl").absorbing == RECIPES["fast"]["absorbing"]  # the defaults are the fast recipe
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(UsageError, match="^absorbing must be in"):
            with_recipe("fast", data="x.jsonl", absorbing=bad)
    cfg_file = tmp_path / "model.json"
    cfg_file.write_text(json.dumps({"absorbing_state": True}))
    with pytest.raises(UsageError, match="the absorbing state follows absorbing"):
        read_config_file(cfg_file)


def test_trained_folder_holds_the_state_and_generates(tmp_path, tokenizer_file, capsys):
    result = train_tiny_fast(tmp_path / "run", tokenizer_file, absorbing=0.5, absorbing_kind="replace", regions="padded")
    loaded = load_model_folder(result.last_checkpoint)
    assert loaded.config.model.absorbing_state and loaded.model.absorbing_state.shape == (loaded.config.model.embed_dim,)
    assert loaded.config.diffusion.absorbing == 0.5  # the share --remask uses
    assert json.loads((result.last_checkpoint / "config.json").read_text())["format_version"] == 2
    folder = str(result.last_checkpoint)
    src = tmp_path / "in.txt"
    src.write_text("how do i learn python?\nwhat is love?\n")
    capsys.readouterr()
    outs = {}
    for flag in (None, "--remask", "--no-remask"):
        with pytest.raises(SystemExit) as exc:
            main(["generate", "-m", folder, "-i", str(src), "--steps", "5", "-q", *([flag] if flag else [])])
        assert exc.value.code in (0, None)
        outs[flag] = capsys.readouterr().out
        assert len(outs[flag].splitlines()) == 2
    assert outs[None] == outs["--remask"] != outs["--no-remask"]  # on by default for this model
    api = DiffuSeq(loaded).generate(["how do i learn python?", "what is love?"], steps=5, remask=False)
    assert [c[0] for c in api] == outs["--no-remask"].splitlines()
    # without --absorbing the model has no such vector, and the folder stays as before
    plain = train_tiny_fast(tmp_path / "run2", tokenizer_file, steps=1, absorbing=0.0, regions="padded")
    assert not hasattr(load_model_folder(plain.last_checkpoint).model, "absorbing_state")
    capsys.readouterr()
    for flag in (None, "--no-remask"):  # fine for any model
        with pytest.raises(SystemExit) as exc:
            main(["generate", "-m", str(plain.last_checkpoint), "-i", str(src), "--steps", "5", "-q", *([flag] if flag else [])])
        assert exc.value.code in (0, None)
    with pytest.raises(SystemExit) as exc:
        main(["generate", "-m", str(plain.last_checkpoint), "-i", str(src), "--steps", "5", "-q", "--remask"])
    assert exc.value.code == 2
    assert "--remask needs a model trained with `train --absorbing`" in capsys.readouterr().err


# --- re-masking at sampling (generate --remask) ----------------------------------------------------
def test_least_confident_takes_the_share_of_each_rows_target():
    conf = torch.tensor([[0.9, 0.1, 0.5, 0.2, 0.8, 0.3], [0.05, 0.9, 0.8, 0.7, 0.6, 0.5]])
    mask = torch.tensor([[False, True, True, True, True, True], [False, False, True, True, True, True]])
    picked = least_confident(conf, mask, 0.5)
    # row 0: 5 targets -> round(2.5) = 2 lowest: positions 1 (0.1), 3 (0.2); the source's 0.9 never counts
    # row 1: 4 targets -> 2 lowest among positions 2..5: 5 (0.5), 4 (0.6); position 0 (0.05) is source
    assert picked.tolist() == [[False, True, False, True, False, False], [False, False, False, False, True, True]]
    assert not least_confident(conf, mask, 0.0).any()
    assert least_confident(conf, mask, 1.0).equal(mask)


def test_remask_changes_the_trajectory_not_the_interface(tmp_path):
    model = _model()
    diff = Diffusion(DiffusionConfig(steps=20, absorbing=0.5))
    g = torch.Generator().manual_seed(1)
    B, L, d = 2, 10, 8
    mask = torch.zeros(B, L, dtype=torch.bool)
    mask[:, 4:] = True
    src = model.embed(torch.randint(0, 30, (B, L), generator=g))
    z_T = torch.randn(B, L, d, generator=g)
    steps = step_schedule(8, 20)
    plain = sample_loop(model, diff, z_T, src, mask, steps, DDIMSampler(), rounding="logits")
    zero = sample_loop(model, diff, z_T, src, mask, steps, DDIMSampler(), rounding="logits", remask=0.0)
    assert torch.equal(plain.sample, zero.sample)
    got = sample_loop(model, diff, z_T, src, mask, steps, DDIMSampler(), rounding="logits", remask=1.0)
    assert not torch.equal(got.sample, plain.sample)
    assert torch.equal(got.sample[~mask], src[~mask])  # the source stays anchored
    # one row alone gives the same result as in the batch (selection is per row)
    alone = sample_loop(model, diff, z_T[:1], src[:1], mask[:1], steps, DDIMSampler(), rounding="logits", remask=1.0)
    assert torch.allclose(alone.sample, got.sample[:1], atol=1e-5)


# --- collapsing repeated words (generate --dedup) --------------------------------------------------
def test_collapse_repeats_keeps_one_of_each_run_only():
    assert collapse_repeats("Why is Tokyo so so so big? big?") == "Why is Tokyo so big?"
    assert collapse_repeats("the cat the cat") == "the cat the cat"  # only adjacent repeats
    assert collapse_repeats("") == "" and collapse_repeats("  a  a b ") == "a b"


@needs_shared
def test_dedup_option_reaches_the_output_and_is_the_embedded_models_default(tmp_path, capsys):
    from helpers_models import build_tiny_model

    src = tmp_path / "in.txt"
    src.write_text("Why is Tokyo so big?\nHave the Ancient Mayans been scientifically tested?\n")
    tiny = str(build_tiny_model(tmp_path / "tiny"))  # random weights: it repeats words

    def run(*flags):
        with pytest.raises(SystemExit) as exc:
            main(["generate", "-i", str(src), "--steps", "10", "-n", "3", "-q", *flags])
        assert exc.value.code in (0, None)
        return capsys.readouterr().out.splitlines()

    plain, collapsed = run("-m", tiny, "--no-dedup"), run("-m", tiny, "--dedup")
    assert len(collapsed) == 6 and collapsed == [collapse_repeats(t) for t in plain] and collapsed != plain
    assert run("-m", tiny) == plain  # a folder without decoding defaults decodes as the paper does
    # the embedded paraphrase model asks for it in its config.json ("decoding")
    assert run() == [collapse_repeats(t) for t in run("--no-dedup")]