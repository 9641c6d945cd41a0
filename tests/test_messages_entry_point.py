"""What a person sees, through the installed entry point (issue 21, items 5, 7, 8 and 10-13):
errors in one wording, a quiet `| head -1`, a live status line under the output on a terminal,
the summary line, --help as a shell user reads it, and evaluate's table when it is redirected.
"""

from __future__ import annotations

import os
import pty
import re
import select
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from test_bad_input_entry_point import ENV, _entry_point, assert_clean_failure, diffuseq


@pytest.fixture(scope="module")
def model(shared_data, tmp_path_factory) -> Path:
    from helpers_models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def questions(n: int) -> str:
    return "".join(f"how do i learn topic number {i} in {'many ' * (i % 7)}ways?\n" for i in range(n))


# --- item 5: a full standard output is named as such ----------------------------------------------
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_standard_output_is_named(tmp_path, model):
    src = tmp_path / "in.txt"
    src.write_text(questions(3))
    with open("/dev/full", "w") as full:
        r = subprocess.run([*_entry_point(), "generate", "-m", str(model), "-i", str(src), "--steps", "2"], stdout=full,
                           stderr=subprocess.PIPE, text=True, env=ENV, stdin=subprocess.DEVNULL)
    assert r.returncode == 1
    assert r.stderr.strip() == "error: <stdout>: cannot write (No space left on device)"


# --- item 7: `| head -1` ends the job quietly, and early ---------------------------------------------
def test_head_ends_the_job_quietly_with_one_candidate_per_line(tmp_path, model):
    src = tmp_path / "in.txt"
    src.write_text(questions(200))  # fewer than the lines held before a bucket must run: all wait for the end
    cmd = f"set -o pipefail; {shlex.join(_entry_point())} generate -m {shlex.quote(str(model))} -i {shlex.quote(str(src))} --steps 2 | head -1"
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0 and r.stderr == "" and len(r.stdout.splitlines()) == 1


def test_the_first_line_comes_out_before_the_last_batch_runs(model):
    """A complete input waits in several length buckets (none full, so none ran while reading); they
    run oldest line first, and each line goes out as soon as it and those before it are done, so a
    reader that wants one line gets it after the first batch, not after all of them."""
    from diffuseq_cli.generation import GenerateOptions, SamplingConfig, generate_stream
    from diffuseq_cli.modelfiles.folder import load_model_folder

    loaded = load_model_folder(model)
    calls: list[int | None] = []
    lines = [" ".join(["why"] * (1 + i % 12)) + "?" for i in range(60)]  # 5 lengths for this model
    results = generate_stream(loaded, lines, GenerateOptions(sampling=SamplingConfig(steps=2)),
                              on_batch=lambda n, left: calls.append(left))
    first = next(results)
    assert first.line == 0 and len(calls) == 1 and calls[0] is not None and calls[0] >= 4  # the rest still to come
    rest = list(results)
    assert len(rest) == 59 and calls[-1] == 0 and len(calls) == calls[0] + 1


# --- item 8: one wording for the same mistake, in every command ----------------------------------------
@pytest.mark.parametrize("args, message", [
    (["generate", "--steps", "0"], "error: --steps must be at least 1, got 0"),
    (["train", "data.jsonl", "--steps", "0"], "error: --steps must be at least 1, got 0"),
    (["generate", "-n", "0"], "error: --num-samples must be at least 1, got 0"),
    (["rerank", "a.txt", "-n", "0"], "error: --num-samples must be at least 1, got 0"),
    (["evaluate", "a.txt", "a.txt", "-n", "0"], "error: --num-samples must be at least 1, got 0"),
    (["generate", "-b", "0"], "error: --batch-size must be at least 1, got 0"),
    (["train", "data.jsonl", "-b", "0"], "error: --batch-size must be at least 1, got 0"),
    (["--threads", "0", "evaluate", "a.txt", "a.txt"], "error: --threads must be at least 1, got 0"),
    (["generate", "-f", "xml"], "error: --format must be one of text, jsonl, got 'xml'"),
    (["rerank", "a.txt", "-f", "xml"], "error: --format must be one of text, jsonl, got 'xml'"),
    (["generate", "--sampler", "euler"], "error: --sampler must be one of "),
    (["generate", "--seed", "abc"], "error: --seed must be a valid integer"),
    (["generate", "--no-such-option"], "error: no such option: --no-such-option"),
    (["evaluate"], "error: missing argument 'FILE'"),
])
def test_one_wording_for_the_same_mistake_in_every_command(tmp_path, args, message):
    (tmp_path / "a.txt").write_text("x\n")
    (tmp_path / "data.jsonl").write_text('{"src": "a", "trg": "b"}\n')
    r = diffuseq(*args, cwd=tmp_path)
    assert_clean_failure(r, 2, message)
    assert r.stderr.count("\n") == 1 and "Usage:" not in r.stderr and "Value error" not in r.stderr


def test_a_bad_byte_reads_the_same_in_every_command(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b'{"src": "a", "trg": "b"}\n{"src": "\xff", "trg": "b"}\n')
    wording = "bad.txt:2: not valid UTF-8 (byte 0xff at column 10)"
    for args in (("train", bad), ("generate", "-i", bad), ("evaluate", bad, bad), ("rerank", bad, "-n", "1", "--input-format", "text", "-o", tmp_path / "best.txt")):
        assert_clean_failure(diffuseq(*args, cwd=tmp_path), 1, wording)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "best.txt").exists()


# --- items 10 and 11: what generate shows while and after it works --------------------------------------
def _on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run with stdout and stderr on one terminal (100 columns); returns the exit status and all it drew."""
    import fcntl
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    proc = subprocess.Popen([*_entry_point(), *args], stdout=follower, stderr=follower, stdin=subprocess.DEVNULL,
                            cwd=cwd, env=dict(ENV, COLUMNS="100", TERM="xterm"))
    os.close(follower)
    seen = b""
    while select.select([leader], [], [], 300)[0]:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    return proc.wait(timeout=60), seen.decode(errors="replace")


def _screen(drawn: str, width: int = 100) -> list[str]:
    """The rows a terminal shows after ``drawn``: enough of CR, LF, erase-line, cursor-up and
    colours (ignored) for what rich and the output write."""
    rows, r, c = [[]], 0, 0
    for token in re.split(r"(\x1b\[[0-9;?]*[A-Za-z]|\r|\n)", drawn):
        if token == "\r":
            c = 0
        elif token == "\n":
            r, c = r + 1, 0
            rows += [[] for _ in range(r + 1 - len(rows))]
        elif token.startswith("\x1b["):
            if token.endswith("K"):
                rows[r] = []
            elif token.endswith("A"):
                r = max(0, r - int(token[2:-1] or 1))
        else:
            for ch in token:
                if c >= width:
                    r, c = r + 1, 0
                    rows += [[] for _ in range(r + 1 - len(rows))]
                rows[r] += [" "] * (c - len(rows[r]))
                rows[r][c:c + 1] = [ch]
                c += 1
    return ["".join(row).rstrip() for row in rows]


def test_on_a_terminal_a_status_line_stays_below_the_output(tmp_path, model):
    (tmp_path / "in.txt").write_text(questions(40))
    args = ["generate", "-m", str(model), "-i", "in.txt", "-n", "4", "--steps", "2"]
    code, drawn = _on_a_terminal(args, tmp_path)
    assert code == 0
    plain = subprocess.run([*_entry_point(), *args, "-q"], capture_output=True, text=True, cwd=tmp_path, env=ENV)
    expected = plain.stdout.splitlines()
    assert len(expected) == 160
    final = [row for row in _screen(drawn) if row]
    assert final[:-1] == expected  # every output line, in order, nothing of the status left among them
    assert final[-1].startswith("generated 40 lines, 160 candidates")
    # while it ran: output lines above, and beneath them the live status (spinner, count, lines/s)
    cut = drawn.rindex("lines/s", 0, drawn.index("generated 40 lines")) + len("lines/s")
    during = [row for row in _screen(drawn[:cut]) if row]
    assert re.search(r"generating.*\b\d+/40\b.*lines/s", during[-1]), during[-3:]
    assert during[-2] in expected and during[:-1] == expected[: len(during) - 1]


def test_the_eta_waits_until_the_work_left_is_known_and_a_fifth_is_done():
    from diffuseq_cli.commands.generate_run import eta_text

    assert eta_text(3, None, 10.0) == ""  # the input is still being read: no count of calls left
    assert eta_text(1, 30, 2.0) == ""  # 1 of 31 calls: too early to say
    assert eta_text(10, 30, 20.0) == "ETA 1:00"  # 2 s a call, 30 calls left
    assert eta_text(10, 0, 20.0) == "ETA 0:00"
    # with several workers it counts lines, and waits for half of them
    from diffuseq_cli.commands.generate_run import ETA_AFTER_LINES

    assert eta_text(10, 30, 20.0, after=ETA_AFTER_LINES) == ""  # a quarter of the lines: too early
    assert eta_text(20, 20, 20.0, after=ETA_AFTER_LINES) == "ETA 0:20"


def test_the_summary_says_how_many_lines_were_blank(tmp_path, model):
    src = tmp_path / "in.txt"
    src.write_text("\n\nhow do i learn python?\n \n\n")
    r = subprocess.run([*_entry_point(), "generate", "-m", str(model), "-i", str(src), "--steps", "2"],
                       capture_output=True, text=True, env=ENV, stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and r.stdout.split("\n")[:2] == ["", ""] and r.stdout.count("\n") == 5
    assert "generated 5 lines (4 blank, passed through as blank lines), 1 candidate," in r.stderr


# --- item 12: --help as a shell user reads it ---------------------------------------------------------------
def _help(*command: str) -> str:
    r = subprocess.run([*_entry_point(), *command, "--help"], capture_output=True, text=True,
                       env=dict(ENV, COLUMNS="80"))
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("command, usage", [
    ("train", "Usage: diffuseq train [OPTIONS] DATA"),
    ("generate", "Usage: diffuseq generate [OPTIONS]"),
    ("rerank", "Usage: diffuseq rerank [OPTIONS] CANDIDATES..."),
    ("evaluate", "Usage: diffuseq evaluate [OPTIONS] FILE..."),
    ("convert", "Usage: diffuseq convert [OPTIONS] CHECKPOINT"),
])
def test_help_writes_usage_and_arguments_without_braces_or_python_types(command, usage):
    text = _help(command)
    assert text.splitlines()[0] == usage
    assert "{" not in text.splitlines()[0] and "<list[" not in text and "list[str]" not in text
    assert "--help" in text


def test_help_explains_each_choice_names_the_tasks_and_shows_a_trial_run():
    from diffuseq_cli.modelfiles.tasks import TASKS

    generate, train = _help("generate"), _help("train")
    for text in (generate, train):
        assert re.search(r"soft\s+\(the\s+embeddings\s+averaged", text)
    flat = " ".join(generate.split())
    assert all(name in flat for name in TASKS)
    assert any("--steps" in line and "--max-minutes" in line and line.strip().startswith("diffuseq train")
               for line in train.splitlines())
    example = [line.strip() for line in _help("convert").splitlines() if line.strip().startswith("diffuseq convert")]
    assert example == ["diffuseq convert ema_0.9999_050000.pt --tokenizer vocab.txt -o models/qqp"]


# --- item 13: evaluate's table on a log (stderr not a terminal, 80 columns) -----------------------------
def test_evaluate_table_wraps_names_and_keeps_the_signature_whole(tmp_path):
    long_names = ["qqp_out_candidates_seed0.txt", "qqp_out_candidates_seed1.txt"]
    for name, words in zip(long_names, ("a b c", "a b d")):
        (tmp_path / name).write_text(f"{words}\nx y z\n")
    (tmp_path / "refs.txt").write_text("a b c\nx y w\n")
    (tmp_path / "src.txt").write_text("a b\nx y\n")
    args = [*long_names, "refs.txt", "--mbr", "--sources", "src.txt"]
    r = subprocess.run([*_entry_point(), "evaluate", *args], capture_output=True, text=True, cwd=tmp_path,
                       env=dict(ENV, COLUMNS="80"))
    assert r.returncode == 0, r.stderr
    assert "…" not in r.stderr
    first_cells = [line.split("│")[1].strip() for line in r.stderr.splitlines() if line.startswith("│")]
    joined = "".join(first_cells)
    assert all(name in joined for name in long_names), r.stderr
    signature = subprocess.run([*_entry_point(), "evaluate", *args, "-f", "json"], capture_output=True, text=True,
                               cwd=tmp_path, env=ENV)
    import json

    assert json.loads(signature.stdout)["signature"] in r.stderr.splitlines()
