"""What bench/gpu_run.py checks and measures, on CPU: a CUDA run whose CUDA tests skipped is a
failure, and the training timings never include a step of a batch length not run before."""

import importlib.util

import pytest
import torch

from paths import QQP_VALID, ROOT


@pytest.fixture(scope="module")
def gpu_run():
    spec = importlib.util.spec_from_file_location("gpu_run", ROOT / "bench" / "gpu_run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("returncode, counts, on_cuda, ok", [
    (0, {"tests": 3, "failures": 0, "errors": 0, "skipped": 0}, True, True),
    (0, {"tests": 3, "failures": 0, "errors": 0, "skipped": 3}, True, False),  # all skipped on a GPU
    (0, {"tests": 3, "failures": 0, "errors": 0, "skipped": 1}, True, False),
    (5, {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}, True, False),  # nothing collected
    (0, {"tests": 3, "failures": 0, "errors": 0, "skipped": 3}, False, True),  # the CPU rehearsal
    (5, {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}, False, True),
    (1, {"tests": 3, "failures": 1, "errors": 0, "skipped": 0}, True, False),
    (1, {"tests": 3, "failures": 0, "errors": 1, "skipped": 0}, False, False),
    (2, None, False, False),  # pytest wrote no report
])
def test_cuda_test_outcomes(gpu_run, returncode, counts, on_cuda, ok):
    assert (gpu_run.cuda_tests_problem(returncode, counts, on_cuda) is None) is ok


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the CUDA tests run: bench/gpu_run.py's stage checks that")
def test_the_cuda_stage_fails_where_the_cuda_tests_only_skip(gpu_run):
    """On this CPU machine every CUDA test skips: fine for the rehearsal, a failure for a CUDA run."""
    rehearsal = gpu_run.cuda_tests_stage(on_cuda=False)
    assert rehearsal["tests"] == rehearsal["skipped"] > 0
    with pytest.raises(RuntimeError, match="CUDA tests skipped"):
        gpu_run.cuda_tests_stage(on_cuda=True)


def test_every_timed_training_step_has_a_batch_length_run_before(gpu_run, tmp_path, monkeypatch, tokenizer_file):
    from diffuseq_cli.training.config import with_recipe
    from diffuseq_cli.training.trainer import Trainer

    lengths = []
    step = Trainer.train_step

    def recording(self):
        out = step(self)
        lengths.append(out["tokens"] // self.cfg.batch_size)  # the batch's padded length
        return out

    monkeypatch.setattr(Trainer, "train_step", recording)
    cfg = with_recipe("fast", data=str(QQP_VALID), out=str(tmp_path / "run"), tokenizer=tokenizer_file, preset="tiny",
                      diffusion_steps=50, batch_size=8, steps=10**6)
    _, seconds, tokens = gpu_run._timed_steps(cfg, "cpu", 6)
    warm, timed = lengths[:-6], lengths[-6:]
    assert len(set(timed)) > 1  # the premise: lengths vary from batch to batch
    assert set(timed) <= set(warm)
    assert tokens == 8 * sum(timed) and seconds > 0
