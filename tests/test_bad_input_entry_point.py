"""Bad input through the installed `diffuseq` entry point, as a user meets it (issue 15).

Each case checks: the exit status, a short stderr without a traceback, nothing on stdout,
and that no file that existed before is lost or changed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from paths import OFFICIAL_TINY, QQP_VALID


def _entry_point() -> list[str]:
    script = Path(sys.executable).with_name("diffuseq")
    if script.exists():
        return [str(script)]
    found = shutil.which("diffuseq")
    return [found] if found else [sys.executable, "-m", "diffuseq_cli"]


ENV = dict(os.environ, OMP_NUM_THREADS="1")


def diffuseq(*args, cwd=None):
    return subprocess.run([*_entry_point(), *map(str, args)], capture_output=True, text=True, env=ENV, cwd=cwd,
                          stdin=subprocess.DEVNULL)


def assert_clean_failure(r, code: int, *pieces: str):
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) <= 3, r.stderr
    assert r.stdout == ""
    for piece in pieces:
        assert piece in r.stderr, r.stderr


@pytest.fixture
def files(shared_data, tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(QQP_VALID.read_text().splitlines(keepends=True)[:40]))
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me\n")
    return tmp_path, data, existing


def test_train_refuses_bad_paths_without_tracebacks_or_leftovers(files):
    tmp, data, existing = files
    assert_clean_failure(diffuseq("train", tmp), 2, "is a folder")
    assert_clean_failure(diffuseq("train", data, "--out", existing), 2, "not a folder")
    assert existing.read_text() == "keep me\n"
    assert_clean_failure(diffuseq("train", data, "--out", existing / "sub"), 2, "cannot create")
    assert_clean_failure(diffuseq("train", data, "--out", "/proc/diffuseq-x"), 2, "cannot create")
    assert_clean_failure(diffuseq("train", tmp / "missing.jsonl", "--out", tmp / "run1"), 2, "no such file")
    assert not (tmp / "run1").exists()
    assert_clean_failure(diffuseq("train", data, "--out", tmp / "run2", "--gpus", "4", "--preset", "tiny"), 2, "--gpus")
    assert not (tmp / "run2").exists()  # a failed start leaves no empty run folder


def test_generate_never_destroys_its_input_and_reports_unwritable_outputs(files):
    tmp, _, existing = files
    assert_clean_failure(diffuseq("generate", "-i", existing, "-o", existing, "--steps", "2"), 2, "is the input file")
    assert existing.read_text() == "keep me\n"
    # a file that takes no writes (the first write fails), and a folder that does not exist (the open fails):
    # runtime errors of the output, one line each, nothing on stdout
    assert_clean_failure(diffuseq("generate", "-i", existing, "-o", "/proc/version", "--steps", "2"), 1,
                         "error: /proc/version: cannot write (")
    assert_clean_failure(diffuseq("generate", "-i", existing, "-o", tmp / "no" / "out.txt", "--steps", "2"), 1,
                         f"error: {tmp / 'no' / 'out.txt'}: cannot write (No such file or directory)")
    assert not (tmp / "no").exists()


def test_convert_names_a_non_checkpoint_without_unsafe_advice(files):
    tmp, _, _ = files
    bad = tmp / "x.pt"
    bad.write_bytes(b"\x80\x02not a pickle at all")
    r = diffuseq("convert", bad, "--tokenizer", OFFICIAL_TINY / "vocab.txt", "-o", tmp / "out")
    assert_clean_failure(r, 1, "not an official DiffuSeq checkpoint")
    assert r.stderr.strip().count("\n") == 0  # one line
    assert "weights_only" not in r.stderr and "will likely succeed" not in r.stderr
    assert not (tmp / "out").exists()


def test_evaluate_refuses_empty_references_and_rerank_writes_nothing_when_misaligned(files):
    tmp, _, _ = files
    empty = tmp / "empty.txt"
    empty.write_text("")
    assert_clean_failure(diffuseq("evaluate", empty, empty), 1, "empty")
    a, b = tmp / "a.txt", tmp / "b.txt"
    a.write_text("one\ntwo\nthree\nfour\n")
    b.write_text("one\ntwo\nthree\n")
    assert_clean_failure(diffuseq("rerank", a, b), 1, "line-aligned")


def test_missing_inputs_are_usage_errors_for_every_command(files):
    tmp, data, _ = files
    missing = tmp / "missing.txt"
    for args in (("train", missing), ("generate", "-i", missing), ("evaluate", missing, data),
                 ("rerank", missing, missing), ("convert", tmp / "missing.pt", "-o", tmp / "o")):
        assert_clean_failure(diffuseq(*args), 2)


def test_threads_option_overrides_the_environment_with_a_note():
    r = subprocess.run([*_entry_point(), "--threads", "1", "evaluate", "--help"], capture_output=True, text=True,
                       env=dict(os.environ, OMP_NUM_THREADS="2"))
    assert r.returncode == 0 and "--threads 1 overrides OMP_NUM_THREADS=2" in r.stderr
    probe = "import os; from diffuseq_cli.threads import configure; configure(); print(os.environ.get('GOMP_SPINCOUNT'))"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env).stdout.strip() == "1000"
    env["OMP_WAIT_POLICY"] = "ACTIVE"  # the user's own wait policy: nothing is added
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env).stdout.strip() == "None"


def test_a_run_folder_as_model_means_its_latest_checkpoint(tmp_path, tokenizer_file):
    from helpers_models import train_tiny_fast

    result = train_tiny_fast(tmp_path / "run", tokenizer_file, steps=2, save_every=1)
    src = tmp_path / "in.txt"
    src.write_text("how do i learn python?\n")
    by_run = diffuseq("generate", "-m", tmp_path / "run", "-i", src, "--steps", "3", "-q")
    by_checkpoint = diffuseq("generate", "-m", result.last_checkpoint, "-i", src, "--steps", "3", "-q")
    assert by_run.returncode == 0 and by_run.stdout == by_checkpoint.stdout and by_run.stdout.strip()
    empty = tmp_path / "empty-run"
    (empty / "checkpoints").mkdir(parents=True)
    (empty / "config.json").write_text("{}")
    assert_clean_failure(diffuseq("generate", "-m", empty, "-i", src), 2, "no complete checkpoint")


def test_training_eta_stops_at_max_minutes_and_an_interrupt_says_how_to_resume(tmp_path, tokenizer_file, capsys):
    from diffuseq_cli.commands.train_progress import training_reporter
    from diffuseq_cli.training.clock import Clock

    assert Clock(0).eta(60.0, 100, 900) == pytest.approx(540.0)  # 900 steps at 0.6 s each
    assert Clock(2).eta(60.0, 100, 900) == pytest.approx(60.0)  # but --max-minutes 2 ends it in 60 s
    late = Clock(1)
    late.started -= 61  # this session began 61 s ago
    assert late.over_budget() and not Clock(1).over_budget() and late.elapsed() > 61
    training_reporter(True, {"event": "stopped", "step": 7, "reason": "KeyboardInterrupt", "interrupted": True,
                             "last": "runs/x/checkpoints/step_00000005",
                             "resume": "diffuseq train d.jsonl --out runs/x --resume"})
    err = capsys.readouterr()
    text = err.out + err.err
    assert "step_00000005" in text and "--resume" in text  # shown even with --quiet


def test_generate_on_a_terminal_says_what_it_does_before_the_first_line(tmp_path):
    """stderr on a terminal: a spinner while the model loads, then 'first batch' until a line is out."""
    import pty
    import select

    src = tmp_path / "in.txt"
    src.write_text("how do i learn python?\nwhat is love?\n")
    leader, follower = pty.openpty()
    with open(tmp_path / "out.txt", "w") as out:
        proc = subprocess.Popen([*_entry_point(), "generate", "-i", str(src), "-o", str(tmp_path / "o.txt"), "--steps", "3"],
                                stdout=out, stderr=follower, stdin=subprocess.DEVNULL, env=dict(ENV, COLUMNS="100"))
    os.close(follower)
    seen = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    proc.wait(timeout=120)
    os.close(leader)
    text = seen.decode(errors="replace")
    assert proc.returncode == 0
    assert "loading the model" in text and "first batch" in text, text[-500:]
