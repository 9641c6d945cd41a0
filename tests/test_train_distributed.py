"""Two processes on gloo follow the same trajectory as one process with the same global batch,
each trains on its own half of every global batch, and a worker's error reaches the caller."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffuseq_cli.core.diffusion import Diffusion
from diffuseq_cli.errors import DataError
from diffuseq_cli.modelfiles.run_folder import latest_checkpoint, load_train_state
from diffuseq_cli.modelfiles.tokenizer import tokenizer_from_str
from diffuseq_cli.training import distributed
from diffuseq_cli.training.config import with_recipe
from diffuseq_cli.training.data import collate
from diffuseq_cli.training.distributed import free_port
from diffuseq_cli.training.run import Trainer, prepare_run, train

ROOT = Path(__file__).resolve().parents[1]
from paths import QQP_VALID
STEPS = 4


def tiny(tmp_path, tokenizer_file, name, **kw):
    values = dict(data=str(QQP_VALID), out=str(tmp_path / name), tokenizer=tokenizer_file, preset="tiny",
                  diffusion_steps=100, seq_len=32, batch_size=16, steps=STEPS, warmup=2, save_every=1000, log_every=1)
    values.update(kw)
    return with_recipe("fast", **values)


def final_state(run) -> dict:
    return load_train_state(latest_checkpoint(run))


def max_diff(a, b) -> float:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        a, b = [a[k] for k in sorted(a)], [b[k] for k in sorted(b)]
    return max(float((x.double() - y.double()).abs().max()) for x, y in zip(a, b, strict=True))


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path, tokenizer_file):
    one = train(tiny(tmp_path, tokenizer_file, "one"))
    two = train(tiny(tmp_path, tokenizer_file, "two", nproc=2))
    assert two.step == STEPS and two.last_checkpoint.name == f"step_{STEPS:08d}"  # rank 0's result came back
    s1, s2 = final_state(one.run), final_state(two.run)
    assert max_diff(s1["model"], s2["model"]) < 1e-5
    assert max_diff(s1["ema"], s2["ema"]) < 1e-5
    # the loss-aware sampler saw every rank's losses, in the global order
    assert torch.equal(s1["sampler"]["counts"], s2["sampler"]["counts"])
    assert max_diff([s1["sampler"]["losses"]], [s2["sampler"]["losses"]]) < 1e-5
    assert s2["step"] == STEPS and (s2["epoch"], s2["batch_pos"]) == (s1["epoch"], s1["batch_pos"])
    assert len(s2["rng"]) == 2  # every rank's RNG state is kept for resume
    # the same under torchrun (the multi-machine path): rank 0 prepares, the others receive the tokenizer
    run3 = tmp_path / "torchrun"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
           "-m", "diffuseq_cli", "train", str(QQP_VALID), "--out", str(run3), "--tokenizer", tokenizer_file,
           "--preset", "tiny", "--diffusion-steps", "100", "--seq-len", "32", "-b", "16", "--steps", str(STEPS),
           "--warmup", "2", "--log-every", "1", "--device", "cpu", "-q"]
    done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [str(run3 / "checkpoints" / f"step_{STEPS:08d}")]  # rank 0 alone prints
    s3 = final_state(run3)
    assert max_diff(s1["model"], s3["model"]) < 1e-5 and max_diff(s1["ema"], s3["ema"]) < 1e-5
    initial = Trainer(*prepare_run(tiny(tmp_path, tokenizer_file, "init"), False),
                      distributed.Placement(0, 1, torch.device("cpu")), None).model.state_dict()
    assert max_diff(s1["model"], initial) > 1e-4  # the weights moved: the comparison is not vacuous


def _recording_worker(local_rank: int, cfg, tokenizer_json: str, steps: int, out: str) -> None:
    """Train ``steps`` steps and record which rows of each global batch this rank computed."""
    placement = distributed.init("cpu", ())
    try:
        trainer = Trainer(cfg, tokenizer_from_str(tokenizer_json), placement, None)
        seen = []
        original = Diffusion.training_losses

        def recording(self, model, ids, *args, **kwargs):
            seen.append(ids.clone())
            return original(self, model, ids, *args, **kwargs)

        Diffusion.training_losses = recording
        for _ in range(steps):
            trainer.train_step()
        torch.save({"ids": seen, "model": trainer.model.state_dict()}, Path(out) / f"rank{placement.rank}.pt")
        torch.distributed.barrier()  # both have saved
        if placement.rank == 1:
            raise DataError("rank 1 found bad data", "x.jsonl", 7)
    finally:
        distributed.shutdown()


@pytest.mark.slow
def test_each_rank_trains_on_its_own_half_of_the_global_batch(tmp_path, tokenizer_file):
    cfg, tok = prepare_run(tiny(tmp_path, tokenizer_file, "rec", nproc=2, microbatch=4), resume=False)
    # rank 1 ends with a DataError: a library error in a worker reaches the caller as itself
    with pytest.raises(DataError, match="x.jsonl:7: rank 1 found bad data"):
        distributed.spawn(_recording_worker, 2, (cfg, tok.to_str(), 2, str(tmp_path)))
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    # the same global batches, computed in one process
    single = Trainer(cfg, tok, distributed.Placement(0, 1, torch.device("cpu")), None)
    for step in range(2):
        index = single.next_batch()
        ids, _, _ = collate(single.data, index, tok.pad_id)
        half0 = torch.cat(r0["ids"][2 * step: 2 * step + 2])  # two microbatches of 4 per rank and step
        half1 = torch.cat(r1["ids"][2 * step: 2 * step + 2])
        assert half0.shape[0] == half1.shape[0] == 8
        # rank 0 computed the first half of the global batch, rank 1 the second: split, not duplicated
        assert torch.equal(torch.cat([half0, half1]), torch.from_numpy(ids))
        assert not torch.equal(half0, half1)
    assert len(r0["ids"]) == len(r1["ids"]) == 4
    assert max_diff(r0["model"], r1["model"]) == 0.0  # DDP keeps the replicas identical
    # and 2 processes x 2 microbatches of 4 make the same update as 1 process with the batch of 16
    ref = Trainer(cfg, tok, distributed.Placement(0, 1, torch.device("cpu")), None)
    for _ in range(2):
        ref.train_step()
    assert max_diff(r0["model"], ref.model.state_dict()) < 1e-5


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:  # PPid
                kids.append(int(entry.name))
    return kids


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_text()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_killing_the_launcher_ends_its_workers(tmp_path, tokenizer_file):
    import signal
    import time

    cmd = [sys.executable, "-m", "diffuseq_cli", "train", str(QQP_VALID), "--out", str(tmp_path / "run"),
           "--tokenizer", tokenizer_file, "--preset", "tiny", "--seq-len", "32", "--batch-size", "8",
           "--steps", "100000", "--nproc", "2", "--quiet"]
    # Started as `diffuseq train ... &` from a script is: with SIGINT ignored, which the workers
    # inherit, so torch's own parent-death signal for them (SIGINT) does nothing.
    launcher = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.time() + 120
        workers: list[int] = []
        while time.time() < deadline and not (tmp_path / "run" / "metrics.jsonl").exists():
            time.sleep(0.5)
        workers = [p for p in _children(launcher.pid) if _alive(p)]
        workers = [w for w in workers if "spawn_main" in _cmdline(w)]
        assert len(workers) == 2, "the two workers did not start"
        launcher.send_signal(signal.SIGTERM)  # not the process group: only the launcher, as `pkill -f "diffuseq train"`
        launcher.wait()
        deadline = time.time() + 30
        while time.time() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers), "workers outlived their launcher"
    finally:
        for pid in [launcher.pid, *workers]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
