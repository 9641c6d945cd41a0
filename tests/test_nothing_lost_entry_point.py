"""Nothing a user had is lost, through the installed entry point (issue 21, items 1-4, 6 and 9).

Outputs that are inputs, outputs that fail before their first line, bad lines late in an input
(from a file: refused before the model loads; from a stream: every line before it kept),
``--resume`` with options that do not match the file, outputs that cannot be written, and the
folders a failed ``train`` would leave behind.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from test_bad_input_entry_point import ENV, _entry_point, assert_clean_failure, diffuseq


@pytest.fixture(scope="module")
def model(shared_data, tmp_path_factory) -> Path:
    from helpers_models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def sources(n: int) -> list[str]:
    return [f"how do i learn topic number {i}?" for i in range(n)]


def written(tmp_path: Path, model, count: int) -> tuple[Path, Path]:
    """An input file of ``count`` sources and the output of a whole run over it."""
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("".join(f"{s}\n" for s in sources(count)))
    assert gen(model, "-i", src, "-o", out, "-q").returncode == 0
    return src, out


def gen(model, *args, stdin: bytes | None = None, cwd=None):
    """`diffuseq generate` with the tiny model and few steps; ``stdin`` feeds `-i -`."""
    return subprocess.run([*_entry_point(), "generate", "-m", str(model), "--steps", "2", *map(str, args)],
                          input=stdin, capture_output=True, env=ENV, cwd=cwd,
                          stdin=None if stdin is not None else subprocess.DEVNULL)


# --- item 1: rerank never writes over one of its inputs ---------------------------------------
def test_rerank_refuses_an_output_that_is_one_of_its_inputs_by_any_name(tmp_path):
    names = []
    for k in range(3):
        path = tmp_path / f"c{k}.txt"
        path.write_text("".join(f"candidate {k} of source {i}\n" for i in range(5)))
        names.append(path)
    before = names[0].read_bytes()
    (tmp_path / "link.txt").symlink_to(names[0])
    for output in ("c0.txt", names[0], tmp_path / "link.txt", "./sub/../c0.txt"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        r = diffuseq("rerank", "c0.txt", "c1.txt", "c2.txt", "-o", output, cwd=tmp_path)
        assert_clean_failure(r, 2, "is one of the input files")
        assert names[0].read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    r = diffuseq("rerank", "c0.txt", "c1.txt", "c2.txt", "-o", "best.txt", cwd=tmp_path)
    assert r.returncode == 0 and len((tmp_path / "best.txt").read_text().splitlines()) == 5


# --- item 2: an existing -o survives any failure before the first line; a new one is not left ----
def test_an_output_survives_a_failure_before_its_first_line(tmp_path, model):
    bad = tmp_path / "bad.txt"
    bad.write_bytes("".join(f"{s}\n" for s in sources(100)).encode() + b"bad \xff byte\n")
    prev = tmp_path / "prev.txt"
    prev.write_text("precious\n")
    for extra in ((), ("--resume",)):
        r = gen(model, "-i", bad, "-o", prev, *extra)
        assert r.returncode == 1 and b"bad.txt:101" in r.stderr, r.stderr
        assert prev.read_text() == "precious\n"
    r = gen(tmp_path / "no-such-model", "-i", tmp_path / "prev.txt", "-o", prev)  # the model fails to load
    assert r.returncode == 2 and prev.read_text() == "precious\n"
    r = gen(model, "-i", bad, "-o", tmp_path / "new.txt")
    assert r.returncode == 1 and not (tmp_path / "new.txt").exists()
    assert not (tmp_path / ".new.txt.generate.json").exists()


def test_a_resumed_output_survives_a_failure_at_any_point(tmp_path, model):
    _, out = written(tmp_path, model, 12)
    whole = out.read_bytes()
    out.write_bytes(whole[: len(whole) // 2])  # an interrupted job, cut mid-line
    partial = out.read_bytes()
    # a stream that breaks before any new line is finished: the kept lines and their tail stay
    r = gen(model, "-i", "-", "-o", out, "--resume", stdin=b"\xff\n")
    assert r.returncode == 1 and out.read_bytes() == partial


# --- item 3: a bad line late in the input ------------------------------------------------------
def test_a_bad_line_in_an_input_file_fails_before_the_model_loads(tmp_path):
    bad = tmp_path / "in.txt"
    bad.write_bytes("".join(f"{s}\n" for s in sources(300)).encode() + b"caf\xe9\n")
    # a model that does not exist: the error is the input's, so the model was never looked at
    r = diffuseq("generate", "-i", bad, "-m", tmp_path / "no-such-model", "-o", tmp_path / "out.txt")
    assert_clean_failure(r, 1, "in.txt:301: not valid UTF-8 (byte 0xe9 at column 4)")
    assert not (tmp_path / "out.txt").exists()
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text(json.dumps({"src": "fine"}) + "\n" + '{"src": oops}\n')
    r = diffuseq("generate", "-i", jsonl, "-m", tmp_path / "no-such-model")
    assert_clean_failure(r, 1, "in.jsonl:2: malformed JSON")


def test_from_a_stream_every_line_before_a_bad_one_is_finished_and_kept(tmp_path, model):
    good = "".join(f"{s}\n" for s in sources(300)).encode()
    out = tmp_path / "out.txt"
    r = gen(model, "-i", "-", "-o", out, "-b", "64", stdin=good + b"bad \xff\n" + good)
    assert r.returncode == 1 and b"<stdin>:301" in r.stderr
    assert len(out.read_text().splitlines()) == 300
    assert b"300 finished lines are in" in r.stderr and b"--resume" in r.stderr
    clean = tmp_path / "clean.txt"
    assert gen(model, "-i", "-", "-o", clean, stdin=good).returncode == 0
    assert out.read_bytes() == clean.read_bytes()


def test_resume_checks_the_whole_input_file_before_it_works(tmp_path, model):
    src, out = written(tmp_path, model, 41)
    kept = out.read_bytes()
    src.write_bytes(src.read_bytes() + "".join(f"{s}\n" for s in sources(359)).encode() + b"\xff\n")
    r = gen(model, "-i", src, "-o", out, "--resume", "-b", "4")  # small batches: work would start at once
    assert r.returncode == 1 and b"in.txt:401" in r.stderr and out.read_bytes() == kept


# --- item 4: --resume with options that shape the output differently ----------------------------
def test_resume_refuses_other_shaping_options(tmp_path, model):
    src = tmp_path / "in.txt"
    src.write_text("".join(f"{s}\n" for s in sources(6)))
    out = tmp_path / "out.txt"
    assert gen(model, "-i", src, "-o", out, "-n", "4", "--mbr", "-q").returncode == 0
    before = out.read_bytes()
    r = gen(model, "-i", src, "-o", out, "-n", "2", "--resume")
    assert_clean_failure(_text(r), 2, "cannot resume", "-n 4 --mbr -f text", "-n 2 -f text")
    assert out.read_bytes() == before
    assert gen(model, "-i", src, "-o", out, "-n", "4", "--mbr", "--resume", "-q").returncode == 0
    assert out.read_bytes() == before  # the same options: nothing left to do, nothing changed
    jsonl = tmp_path / "out.jsonl"
    assert gen(model, "-i", src, "-o", jsonl, "-n", "3", "--mbr", "-f", "jsonl", "-q").returncode == 0
    r = gen(model, "-i", src, "-o", jsonl, "-n", "3", "-f", "jsonl", "--resume")  # --mbr missing
    assert r.returncode == 1 and b"cannot resume" in r.stderr


def _text(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(), r.stderr.decode())


# --- item 6: an output that takes no writes is named, with the real reason, before any work -------
@pytest.mark.skipif(not Path("/proc/version").exists(), reason="needs /proc/version")
def test_an_output_that_takes_no_writes_fails_first_with_the_real_reason(tmp_path):
    cands = tmp_path / "c.txt"
    cands.write_text("a\nb\n")
    r = diffuseq("rerank", cands, "-n", "2", "-o", "/proc/version")
    assert_clean_failure(r, 1, "/proc/version: cannot write")
    assert "No such file" not in r.stderr
    src = tmp_path / "in.txt"
    src.write_text("how do i learn python?\n")
    r = diffuseq("generate", "-i", src, "-o", "/proc/version", "-m", tmp_path / "no-such-model")
    assert_clean_failure(r, 1, "/proc/version: cannot write")  # not the missing model: checked first
    r = diffuseq("generate", "-i", src, "-o", tmp_path / "no-such-folder" / "out.txt", "-m", tmp_path / "no-such-model")
    assert_clean_failure(r, 1, "cannot write (No such file or directory)")


# --- item 9: a failed train leaves no folder it made --------------------------------------------
def test_a_failed_train_leaves_no_runs_folder_in_the_working_directory(tmp_path, shared_data):
    from paths import QQP_VALID

    data = tmp_path / "data.jsonl"
    data.write_text("".join(QQP_VALID.read_text().splitlines(keepends=True)[:40]))
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(data.read_bytes() + b'{"src": "\xff", "trg": "x"}\n')
    work = tmp_path / "work"
    work.mkdir()
    import torch

    if not torch.cuda.is_available():
        assert_clean_failure(diffuseq("train", data, "--gpus", "4", cwd=work), 2, "--gpus")
        assert list(work.iterdir()) == []
    assert_clean_failure(diffuseq("train", bad, "--preset", "tiny", cwd=work), 1, "bad.jsonl:41")
    assert list(work.iterdir()) == []
    assert_clean_failure(diffuseq("train", bad, "--preset", "tiny", "--out", "a/b/run", cwd=work), 1, "bad.jsonl:41")
    assert list(work.iterdir()) == []
    (work / "a").mkdir()
    (work / "a" / "keep.txt").write_text("mine\n")
    assert diffuseq("train", bad, "--preset", "tiny", "--out", "a/b/run", cwd=work).returncode == 1
    assert sorted(p.name for p in (work / "a").iterdir()) == ["keep.txt"]  # what was there stays
    assert os.listdir(work) == ["a"]
