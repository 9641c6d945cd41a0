"""Streaming: early output while the input is still open, bounded pending work, flat memory on long inputs."""

from __future__ import annotations

import itertools
import os
import queue
import subprocess
import sys
import threading
import time

import pytest

from diffuseq_cli.generation import GenerateOptions, generate_stream
from diffuseq_cli.generation import SamplingConfig, generate_texts
from diffuseq_cli.modelfiles.folder import load_model_folder
from diffuseq_cli.training.data import read_pairs
from helpers_models import build_tiny_model
from paths import QQP_VALID, require_shared

require_shared(module=True)

SOURCES = [s for s, _, _ in read_pairs(QQP_VALID)]
ENV = dict(os.environ, OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="module")
def tiny(folder):
    return load_model_folder(folder)


def test_first_result_comes_while_the_input_is_still_open(tiny):
    release = threading.Event()

    def lines():
        yield "how do i learn python quickly?"
        yield "what is the best phone to buy?"
        release.wait(120)  # the input stays open until the test has its first result
        yield "why is the sky blue?"

    opts = GenerateOptions(num_samples=2, sampling=SamplingConfig(steps=3), flush_seconds=0.2)
    stream = generate_stream(tiny, lines(), opts)
    start = time.monotonic()
    first = next(stream)
    assert not release.is_set()
    assert time.monotonic() - start < 60  # about flush_seconds plus one small batch
    release.set()
    results = [first, *stream]
    assert [r.line for r in results] == [0, 1, 2]
    assert [r.candidates for r in results] == generate_texts(tiny, [r.source for r in results], 2, opts.sampling)


def test_cli_writes_the_first_line_before_stdin_ends(folder):
    cmd = [sys.executable, "-m", "diffuseq_cli", "generate", "-m", str(folder), "--steps", "3", "-q"]
    proc = subprocess.Popen(cmd, env=ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        proc.stdin.write("how do i learn python quickly?\n")
        proc.stdin.flush()
        first = lines.get(timeout=120)  # start-up, the 0.5 s batch-forming limit, one batch
        assert first.strip()
        assert proc.poll() is None  # still running: its input is open
        proc.stdin.write("why is the sky blue?\n")
        proc.stdin.close()
        assert proc.wait(timeout=120) == 0
        assert lines.get(timeout=10).strip()
    finally:
        proc.kill()
        proc.wait()


def test_pending_lines_stay_bounded_behind_a_waiting_line(tiny):
    # The first line has a length no other line has: its bucket never fills. Without the
    # max_pending rule everything behind it would wait for the end of the input.
    consumed = [0]
    long_first = "word " * 60

    def lines():
        for text in itertools.chain([long_first], itertools.islice(itertools.cycle(["how are you?", "why?"]), 400)):
            consumed[0] += 1
            yield text

    opts = GenerateOptions(max_pending=20, flush_seconds=600, sampling=SamplingConfig(steps=1, batch_size=16))
    held = []
    count = 0
    for count, result in enumerate(generate_stream(tiny, lines(), opts), start=1):
        held.append(consumed[0] - count)  # lines read but not yet written
        assert result.line == count - 1
    assert count == 401
    assert max(held) <= 20 + 64 + 2  # max_pending + the reader's queue + the line in hand


def test_the_reader_thread_ends_when_the_consumer_stops(tiny):
    opts = GenerateOptions(sampling=SamplingConfig(steps=1))
    stream = generate_stream(tiny, itertools.repeat("an endless input line"), opts)
    assert next(stream).line == 0
    stream.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(t.name == "diffuseq-reader" for t in threading.enumerate()):
        time.sleep(0.05)
    assert not any(t.name == "diffuseq-reader" for t in threading.enumerate())


def _peak_rss_kib(folder, path) -> int:
    cmd = [sys.executable, "-m", "diffuseq_cli", "generate", "-m", str(folder), "-i", str(path), "-o", os.devnull,
           "--steps", "1", "-q"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, proc.stderr.read()
    return usage.ru_maxrss  # KiB on Linux


@pytest.mark.slow
def test_memory_stays_flat_on_a_long_input(folder, tmp_path):
    sizes = {}
    for n in (2_000, 20_000):
        path = tmp_path / f"in{n}.txt"
        path.write_text("\n".join(itertools.islice(itertools.cycle(SOURCES), n)) + "\n", encoding="utf-8")
        sizes[n] = _peak_rss_kib(folder, path)
    growth = sizes[20_000] - sizes[2_000]
    assert growth < 16 * 1024, f"peak RSS grew by {growth} KiB for 10x the lines ({sizes})"
