"""Exact target regions and the length head (`train --regions exact`, `generate --length predict --lengths K`):
batch padding is invisible, the head learns lengths, and generation sizes regions with it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffuseq_cli.cli import main
from diffuseq_cli.config import DiffusionConfig, preset
from diffuseq_cli.core.diffusion import Diffusion
from diffuseq_cli.core.model import DiffuSeqTransformer
from diffuseq_cli.errors import UsageError
from diffuseq_cli.generation import SamplingConfig, exact_lengths, prepare
from diffuseq_cli.modelfiles.folder import load_model_folder
from diffuseq_cli.training.config import with_recipe
from diffuseq_cli.training.data import collate, tokenize_file

from helpers_models import qqp_tokenizer, train_tiny_fast
from paths import QQP_VALID, needs_shared


def _model(**kw):
    torch.manual_seed(0)
    cfg = preset("tiny", 40, max_positions=24, embed_dim=8, positions="segment", length_head=True, **kw)
    return DiffuSeqTransformer(cfg).eval()


@needs_shared
def test_exact_collate_keeps_padding_out_of_the_target():
    tok = qqp_tokenizer()
    data = tokenize_file(QQP_VALID, tok, 48)
    index = np.array([0, 1, 2, 3])
    ids, padded, real = collate(data, index, tok.pad_id)
    _, exact, real2 = collate(data, index, tok.pad_id, exact=True)
    assert np.array_equal(real, real2)
    for row, i in enumerate(index):
        n, n_src = int(data.lengths[i]), int(data.n_src[i])
        assert real[row].sum() == n
        assert exact[row].sum() == n - n_src  # [CLS] y [SEP] only
        assert padded[row].sum() == ids.shape[1] - n_src  # the official layout: padding is target
    assert not (exact & ~real).any()


def test_batch_padding_is_invisible_to_a_sequence():
    """A sequence's prediction is the same alone and in a padded batch beside a longer one."""
    model = _model()
    g = torch.Generator().manual_seed(0)
    short, long_ = 9, 14
    z = torch.randn(2, long_, 8, generator=g)
    tm = torch.zeros(2, long_, dtype=torch.bool)
    tm[0, 4:short] = True
    tm[1, 5:] = True
    real = torch.ones(2, long_, dtype=torch.bool)
    real[0, short:] = False
    t = torch.tensor([300.0, 300.0])
    batched = model(z, t, target_mask=tm, key_mask=real)
    alone = model(z[:1, :short], t[:1], target_mask=tm[:1, :short])
    masked_gap = (batched[0, :short] - alone[0]).abs().max()
    # without the key mask the padding does leak in (the check can fail)
    leaky_gap = (model(z, t, target_mask=tm)[0, :short] - alone[0]).abs().max()
    assert masked_gap < 1e-6 and leaky_gap > 1e-4, (masked_gap, leaky_gap)


def test_length_head_learns_lengths_on_a_toy_task():
    """Targets as long as the source plus 2 when it holds a marker word, else one shorter."""
    torch.manual_seed(0)
    model = DiffuSeqTransformer(preset("tiny", 40, max_positions=24, embed_dim=8, length_head=True))
    opt = torch.optim.Adam(model.length_predictor.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)

    def batch(B=64):
        n = torch.randint(3, 9, (B,), generator=g)
        ids = torch.randint(5, 40, (B, 10), generator=g)
        marked = torch.rand(B, generator=g) < 0.5
        ids[:, 1] = torch.where(marked, 4, ids[:, 1])
        mask = torch.arange(10)[None] < n[:, None]
        words = n + torch.where(marked, 2, -1)
        return ids, mask, words

    for _ in range(300):
        ids, mask, words = batch()
        loss = torch.nn.functional.cross_entropy(model.length_logits(ids, mask), words)
        opt.zero_grad()
        loss.backward()
        opt.step()
    ids, mask, words = batch(256)
    accuracy = (model.length_logits(ids, mask).argmax(-1) == words).float().mean()
    assert accuracy > 0.9, accuracy
    assert model.word_embedding.weight.grad is None  # the head reads detached embeddings


def test_length_loss_is_the_heads_cross_entropy_on_the_target_words():
    model = _model()
    diff = Diffusion(DiffusionConfig(steps=20))
    g = torch.Generator().manual_seed(2)
    B, L = 2, 12
    ids = torch.randint(4, 40, (B, L), generator=g)
    target = torch.zeros(B, L, dtype=torch.bool)
    target[0, 4:9] = True  # 5 positions: [CLS] + 3 words + [SEP]
    target[1, 3:12] = True
    real = torch.ones(B, L, dtype=torch.bool)
    real[0, 9:] = False
    t = torch.tensor([3, 11])
    eps0, noise = torch.randn(B, L, 8, generator=g), torch.randn(B, L, 8, generator=g)
    without = diff.training_losses(model, ids, target, t, eps0, noise, key_mask=real)
    got = diff.training_losses(model, ids, target, t, eps0, noise, key_mask=real, length_weight=0.1)
    source = ~target & real
    expected = torch.nn.functional.cross_entropy(model.length_logits(ids, source), torch.tensor([3, 7]), reduction="none")
    assert torch.allclose(got.length, expected)
    assert torch.allclose(got.loss, without.loss + 0.1 * expected)
    # the rounding term ignores the batch padding of row 0
    assert torch.allclose(without.rounding[0], diff.training_losses(
        model, ids[:1, :9], target[:1, :9], t[:1], eps0[:1, :9], noise[:1, :9]).rounding[0], atol=1e-6)


def test_exact_lengths_fit_the_sequence_and_keep_the_beam_order():
    from diffuseq_cli.config import SequenceConfig

    seq = SequenceConfig(seq_len=20)
    assert exact_lengths(6, [5, 3, 7], seq) == (13, 11, 15)
    assert exact_lengths(6, [30, 40, 2], seq) == (20, 10)  # clipped to seq_len, duplicates dropped
    assert exact_lengths(6, [0], seq) == (9,)  # at least one word


def test_options_need_exact_regions_for_a_length_loss():
    with pytest.raises(UsageError, match="length_loss trains a length head, which needs regions exact"):
        with_recipe("fast", data="x.jsonl", length_loss=0.5, regions="padded")
    cfg = with_recipe("fast", data="x.jsonl", regions="exact")
    assert cfg.length_weight == 0.1 and with_recipe("fast", data="x.jsonl", regions="padded").length_weight == 0.0
    assert with_recipe("fast", data="x.jsonl", length_loss=0.5).length_weight == 0.5
    assert with_recipe("paper", data="x.jsonl").length_weight == 0.0  # the paper's layout: padded, no head


def test_trained_exact_model_predicts_lengths_and_spreads_candidates(tmp_path, tokenizer_file, capsys):
    result = train_tiny_fast(tmp_path / "run", tokenizer_file, regions="exact", steps=2)
    folder = result.last_checkpoint
    data = json.loads((folder / "config.json").read_text())
    assert data["format_version"] == 3 and data["model"]["length_head"] and data["sequence"]["regions"] == "exact"
    loaded = load_model_folder(folder)
    jobs = prepare(loaded, ["how do i learn python?", "what is love?"], 0, SamplingConfig(lengths=3))
    for job in jobs:
        assert len(job.lengths) == 3 and len(set(job.lengths)) == 3
        assert [job.length_of(k) for k in range(4)] == [*job.lengths, job.lengths[0]]
        assert all(len(job.src) + 3 <= L <= loaded.config.sequence.seq_len for L in job.lengths)
    # the most likely length first: the head's argmax
    auto = prepare(loaded, ["what is love?"], 0, SamplingConfig(length="auto"))[0]
    assert len(auto.lengths) == 1 and auto.length % 8 == 0
    src = tmp_path / "in.txt"
    src.write_text("how do i learn python?\nwhat is love?\n")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["generate", "-m", str(folder), "-i", str(src), "--steps", "3", "-n", "4", "--lengths", "2", "-f", "jsonl", "-q"])
    assert exc.value.code in (0, None)
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2 and all(len(r["candidates"]) == 4 for r in rows)
    # a model without a head: --length predict and --lengths are usage errors
    plain = train_tiny_fast(tmp_path / "plain", tokenizer_file, steps=1, regions="padded")
    for flags in (["--length", "predict"], ["--lengths", "2"]):
        with pytest.raises(SystemExit) as exc:
            main(["generate", "-m", str(plain.last_checkpoint), "-i", str(src), "--steps", "3", "-q", *flags])
        assert exc.value.code == 2
    assert "length head" in capsys.readouterr().err


def test_init_starts_from_the_folders_weights(tmp_path, tokenizer_file):
    base = train_tiny_fast(tmp_path / "base", tokenizer_file, steps=1, regions="padded")
    run = train_tiny_fast(tmp_path / "ft", None, init=str(base.last_checkpoint), regions="exact", steps=1, lr=0.0,
                          warmup=0, tokenizer=None)
    before = load_model_folder(base.last_checkpoint).model.state_dict()
    after = load_model_folder(run.last_checkpoint).model.state_dict()
    assert set(after) - set(before) and all(k.startswith("length_predictor.") for k in set(after) - set(before))
    for name, value in before.items():  # lr 0: nothing moved
        assert torch.equal(after[name], value), name
