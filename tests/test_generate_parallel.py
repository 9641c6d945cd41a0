"""`generate --nproc N` / `--gpus N` (generation/parallel.py): the input split among worker
processes, the output byte-identical to one process's, streaming, bounded, and ending as one
process does (bad input, --resume, Ctrl-C, `| head -1`). `--gpus` runs the same code on CUDA
devices; here its checks, and the path itself through `--nproc` on the CPU."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from diffuseq_cli.errors import DiffuseqError, FieldError
from diffuseq_cli.generation import GenerateOptions, SamplingConfig, generate_stream
from diffuseq_cli.generation import parallel
from diffuseq_cli.generation.config import CPU_PROCESSES
from diffuseq_cli.generation.parallel import generate_parallel, worker_devices
from diffuseq_cli.modelfiles.folder import load_model_folder
from diffuseq_cli.training.data import read_pairs
from helpers_processes import as_from_a_terminal, marked_env, none_left
from paths import QQP_VALID
from test_generate_cli import model, run  # noqa: F401: the fixtures (a tiny model folder; the command in-process)

SOURCES = [s for s, _, _ in read_pairs(QQP_VALID)][:30]


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("input") / "in.txt"
    path.write_text("\n".join(SOURCES[:12] + [""] + SOURCES[12:]) + "\n", encoding="utf-8")  # an empty line too
    return path


def gen(run, model, *args):
    return run("generate", "-m", model, "--steps", 3, "-q", "-b", 4, *args)


# --- the same bytes as one process ---------------------------------------------------------------
@pytest.mark.parametrize("args", [["-n", "3"], ["-n", "3", "--mbr"], ["-n", "2", "--mbr", "--format", "jsonl"]])
def test_nproc_writes_the_bytes_one_process_writes(run, model, sources, tmp_path, monkeypatch, args):
    one, many, default = tmp_path / "one", tmp_path / "many", tmp_path / "default"
    with monkeypatch.context() as one_cpu:  # the default on a one-core machine: one process, no workers
        one_cpu.setattr(parallel, "usable_cpus", lambda: 1)
        one_cpu.setattr(parallel, "generate_parallel", None)
        assert gen(run, model, "-i", sources, "-o", one, *args)[0] == 0
    assert gen(run, model, "-i", sources, "-o", many, "--nproc", 3, *args)[0] == 0  # 31 lines, chunks of 8: uneven
    assert gen(run, model, "-i", sources, "-o", default, *args)[0] == 0  # a worker per core (here 2)
    assert one.read_bytes() == many.read_bytes() == default.read_bytes() and one.read_bytes().count(b"\n") >= 31


def test_resume_with_nproc_continues_the_one_process_file(run, model, sources, tmp_path):
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert gen(run, model, "-i", sources, "-o", whole, "-n", 2)[0] == 0
    data = whole.read_bytes()
    part.write_bytes(data[: len(data) // 2 + 5])  # stopped mid-line
    assert gen(run, model, "-i", sources, "-o", part, "-n", 2, "--nproc", 2, "--resume")[0] == 0
    assert part.read_bytes() == data


# --- streaming, bounded ----------------------------------------------------------------------------
def test_lines_stream_out_and_the_input_is_read_only_ahead_of_the_workers(model):
    loaded = load_model_folder(model)
    consumed = [0]

    def endless():
        for text in itertools.cycle(SOURCES):
            consumed[0] += 1
            yield text

    opts = GenerateOptions(num_samples=2, sampling=SamplingConfig(steps=2, batch_size=8))
    stream = generate_parallel(loaded, endless(), opts, ["cpu", "cpu"])
    try:
        first = [next(stream) for _ in range(3)]
    finally:
        stream.close()
    assert [r.line for r in first] == [0, 1, 2]
    expected = list(generate_stream(loaded, SOURCES[:3], opts))
    assert [r.candidates for r in first] == [r.candidates for r in expected]
    # read ahead: the reader's queue, a chunk being filled and two chunks out per worker, no more
    size = opts.window
    assert consumed[0] <= max(2 * size, 64) + size + 2 * parallel.CHUNKS_PER_WORKER * size + 2


def test_worker_0_alone_takes_the_threads_of_the_workers_not_started(model, monkeypatch):
    """An input of one chunk never starts the others: worker 0 samples it with all their threads
    (before, 200 lines with -n 1 ran on one core of two), and writes the same candidates."""
    import torch

    loaded = load_model_folder(model)
    opts = GenerateOptions(num_samples=1, sampling=SamplingConfig(steps=2, batch_size=8))
    calls, real = [], torch.set_num_threads

    def spy(n):
        calls.append((threading.current_thread().name, n))
        real(n)

    monkeypatch.setattr(torch, "set_num_threads", spy)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    got = list(generate_parallel(loaded, iter(SOURCES[:3]), opts, ["cpu", "cpu", "cpu"]))
    assert ("diffuseq-generate-0", 3) in calls
    assert [r.candidates for r in got] == [r.candidates for r in generate_stream(loaded, SOURCES[:3], opts)]


def test_the_first_line_comes_while_the_input_is_still_open(model):
    loaded = load_model_folder(model)
    release = threading.Event()

    def lines():
        yield "how do i learn python quickly?"
        yield "what is the best phone to buy?"
        release.wait(300)
        yield "why is the sky blue?"

    opts = GenerateOptions(num_samples=2, sampling=SamplingConfig(steps=2), flush_seconds=0.2)
    stream = generate_parallel(loaded, lines(), opts, ["cpu", "cpu"])
    first = next(stream)
    assert not release.is_set() and first.line == 0
    release.set()
    assert [r.line for r in [first, *stream]] == [0, 1, 2]


# --- ending as one process ends --------------------------------------------------------------------
def test_ctrl_c_keeps_the_finished_lines_and_ends_the_workers(model, tmp_path):
    many = tmp_path / "many.txt"
    many.write_text("\n".join(SOURCES * 20) + "\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    env, mark = marked_env()
    cmd = [sys.executable, "-m", "diffuseq_cli", "generate", "-m", model, "-i", str(many), "-o", str(out),
           "--steps", "3", "-b", "4", "--nproc", "2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=as_from_a_terminal)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 10:
                break
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    written = out.read_bytes()
    assert proc.returncode == 130 and "Traceback" not in err, err
    kept = written.count(b"\n")
    assert 10 <= kept < 600 and written.endswith(b"\n")
    assert f"interrupted: {kept} finished lines are in {out}" in err
    assert none_left(mark)


def test_a_worker_that_dies_is_an_error_not_a_hang():
    class Dead:
        exitcode = -9

    with pytest.raises(DiffuseqError, match="worker 1 ended unexpectedly"):
        parallel._wait([parallel._Worker(type("Alive", (), {"exitcode": None})(), None), parallel._Worker(Dead(), None)])


# --- devices -------------------------------------------------------------------------------------------
def test_worker_devices_and_their_checks(monkeypatch):
    assert worker_devices("cpu", 3) == ["cpu"] * 3
    monkeypatch.setattr(parallel, "usable_cpus", lambda: 8)
    assert worker_devices("cpu") == ["cpu"] * min(8, CPU_PROCESSES)
    monkeypatch.setattr(parallel, "usable_cpus", lambda: 1)
    assert worker_devices("cpu") == ["cpu"]
    with pytest.raises(FieldError, match="gpus"):
        worker_devices("cpu", gpus=(0,))
    with pytest.raises(FieldError, match="nproc"):
        worker_devices("auto", 2, gpus=(0, 1))
    monkeypatch.setattr(parallel.torch.cuda, "is_available", lambda: False)
    with pytest.raises(FieldError, match="no CUDA GPU"):
        worker_devices("auto", gpus=(0, 2))
    monkeypatch.setattr(parallel.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(parallel.torch.cuda, "device_count", lambda: 2)
    assert worker_devices("auto", gpus=(1, 0)) == ["cuda:1", "cuda:0"]
    with pytest.raises(FieldError, match="this machine has 2 GPU"):
        worker_devices("auto", gpus=(0, 2))


def test_gpus_on_a_machine_without_them_is_a_usage_error(run, model, sources):
    if parallel.torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = gen(run, model, "-i", sources, "--gpus", "0,2")
    assert code == 2 and "--gpus was given, but no CUDA GPU is available" in err and "--nproc" in err
    code, _, err = gen(run, model, "-i", sources, "--gpus", "0,0")
    assert code == 2 and "lists a device twice" in err
