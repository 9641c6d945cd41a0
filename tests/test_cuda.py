"""The CUDA path (issue 14): run by ``bench/gpu_run.py`` on a lent GPU; skipped where there is none.

Each has a CPU test of the same logic elsewhere: batch invariance (test_generate.py), resume
(test_train_resume.py), precision handling (test_train.py).
"""

from __future__ import annotations

import json

import pytest
import torch

from diffuseq_cli.core.diffusion import Diffusion
from diffuseq_cli.generation import SamplingConfig, prepare, sample_jobs
from diffuseq_cli.modelfiles.folder import load_model_folder

from helpers_models import build_tiny_model, train_tiny_fast

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

SOURCES = ["how do i learn python quickly?", "what is the capital of france?", "why is the sky blue?",
           "how can i lose weight fast?", "what is love?", "which phone should i buy?"]


def test_sampling_gives_the_same_tokens_for_any_batch_and_order_on_cuda(tmp_path):
    """fp32 on CUDA: a row's tokens do not depend on the rows beside it (cuBLAS may pick other
    kernels per batch shape; tokens must still agree; the z_0 samples within 1e-4)."""
    loaded = load_model_folder(build_tiny_model(tmp_path / "m"), device="cuda")
    diff = Diffusion(loaded.config.diffusion)
    opts = SamplingConfig(steps=10)
    jobs = prepare(loaded, SOURCES, 0, opts)
    by_len: dict[int, list] = {}
    for j in jobs:
        by_len.setdefault(j.length, []).append(j)
    for group in by_len.values():
        together = sample_jobs(loaded, diff, group * 2, [0] * len(group) + [1] * len(group), opts, torch.device("cuda"))
        for i, job in enumerate(group):
            alone = sample_jobs(loaded, diff, [job], [0], opts, torch.device("cuda"))[0]
            assert alone == together[i]
        reversed_ = sample_jobs(loaded, diff, group[::-1], [0] * len(group), opts, torch.device("cuda"))
        assert reversed_[::-1] == together[: len(group)]


def bf16_against_fp32(tmp_path, tokenizer_file, device: str) -> dict:
    """Three steps from the same start in fp32 and in bf16 (and with lr 0: the start itself): each
    step's loss, and the cosine and norm ratio of the two runs' weight displacements."""
    from diffuseq_cli.modelfiles.run_folder import latest_checkpoint, load_train_state

    losses, weights = {}, {}
    for name, precision, extra in (("start", "fp32", {"lr": 0.0}), ("fp32", "fp32", {}), ("bf16", "bf16", {})):
        result = train_tiny_fast(tmp_path / name, tokenizer_file, device=device, precision=precision, steps=3,
                                 regions="exact", absorbing_kind="v2", **extra)
        records = [json.loads(x) for x in (result.run / "metrics.jsonl").read_text().splitlines()]
        losses[name] = [r["loss"] for r in records if "loss" in r]
        model = load_train_state(latest_checkpoint(result.run))["model"]
        weights[name] = torch.cat([v.double().flatten() for k, v in sorted(model.items()) if v.is_floating_point()])
    moved = {name: weights[name] - weights["start"] for name in ("fp32", "bf16")}
    cosine = float(torch.nn.functional.cosine_similarity(moved["fp32"], moved["bf16"], dim=0))
    return {"losses": losses, "cosine": cosine, "norm_ratio": float(moved["bf16"].norm() / moved["fp32"].norm()),
            "moved": float(moved["fp32"].norm())}


def test_bf16_training_follows_fp32_over_three_steps(tmp_path, tokenizer_file):
    """Not only the first loss (computed before any update): the losses of steps 2 and 3 come from
    updated weights, and the weights after three steps moved as fp32's did."""
    got = bf16_against_fp32(tmp_path, tokenizer_file, "cuda")
    fp32, bf16 = got["losses"]["fp32"], got["losses"]["bf16"]
    assert len(fp32) == len(bf16) == 3 and all(torch.isfinite(torch.tensor(bf16)))
    for a, b in zip(fp32, bf16, strict=True):
        assert abs(b - a) < 0.05 * abs(a), (fp32, bf16)
    assert got["moved"] > 0  # the steps changed the weights
    assert got["cosine"] > 0.9 and 0.8 < got["norm_ratio"] < 1.25, got


def test_one_gpu_trains_resumes_and_its_model_generates_on_cpu(tmp_path, tokenizer_file):
    from diffuseq_cli.api import DiffuSeq

    run = tmp_path / "run"
    from diffuseq_cli.training.config import read_run_config, resume_config
    from diffuseq_cli.training.run import train

    first = train_tiny_fast(run, tokenizer_file, gpus=(0,), steps=2, save_every=2)
    resumed = train(resume_config(read_run_config(run), steps=4), resume=True)
    assert first.step == 2 and resumed.step == 4
    out = DiffuSeq.from_pretrained(str(resumed.last_checkpoint)).generate(SOURCES[:2], steps=5)
    assert len(out) == 2 and all(isinstance(c[0], str) for c in out)
