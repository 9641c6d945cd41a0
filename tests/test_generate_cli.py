"""`diffuseq generate` as a command: same seed same bytes, --mbr against rerank, formats, bad input, resume, help."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffuseq_cli.cli import main
from diffuseq_cli.modelfiles import tasks
from diffuseq_cli.training.data import read_pairs
from helpers_models import build_tiny_model
from helpers_processes import marked_env, none_left
from paths import OFFICIAL_TINY, QQP_VALID, require_shared

require_shared(module=True)

SOURCES = [s for s, _, _ in read_pairs(QQP_VALID)][:30]
ENV = dict(os.environ, OMP_NUM_THREADS="1")  # the CPU is shared: one thread is the fast choice for tiny models


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("models") / "tiny"))


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("input") / "in.txt"
    path.write_text("\n".join(SOURCES) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def run(capsys):
    def invoke(*args):
        with pytest.raises(SystemExit) as exit_info:
            main([*map(str, args)])
        out, err = capsys.readouterr()
        return exit_info.value.code or 0, out, err

    return invoke


def gen(run, model, *args):
    return run("generate", "-m", model, "--steps", 4, "-q", *args)


# --- the same seed gives the same bytes -------------------------------------------------------------
def test_any_batch_size_gives_byte_identical_output(run, model, sources):
    outs = []
    for b in (1, 3, 64):
        code, out, _ = gen(run, model, "-i", sources, "-n", 3, "--seed", 5, "--batch-size", b, "--format", "jsonl")
        assert code == 0
        outs.append(out)
    assert outs[0] == outs[1] == outs[2]
    assert len(outs[0].splitlines()) == len(SOURCES)
    _, other, _ = gen(run, model, "-i", sources, "-n", 3, "--seed", 6, "--format", "jsonl")
    assert other != outs[0]


def test_mbr_chooses_as_rerank_does_on_the_same_candidates(run, model, sources, tmp_path):
    code, chosen, _ = gen(run, model, "-i", sources, "-n", 10, "--mbr")
    assert code == 0
    code, _, _ = gen(run, model, "-i", sources, "-n", 10, "--mbr", "--format", "jsonl", "-o", tmp_path / "c.jsonl")
    assert code == 0
    code, reranked, _ = run("rerank", tmp_path / "c.jsonl")
    assert code == 0
    assert chosen == reranked
    code, ranked_jsonl, _ = run("rerank", tmp_path / "c.jsonl", "--format", "jsonl")
    records = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    ranked = [json.loads(line) for line in ranked_jsonl.splitlines()]
    assert [r["mbr_choice"] for r in records] == [r["choice"] for r in ranked]
    assert [r["mbr_scores"] for r in records] == [r["scores"] for r in ranked]
    assert len({r["mbr_choice"] for r in records}) > 1


# --- formats ----------------------------------------------------------------------------------------
def test_jsonl_has_every_candidate_its_seed_and_the_choice(run, model, sources):
    code, out, _ = gen(run, model, "-i", sources, "-n", 4, "--mbr", "--format", "jsonl", "--seed", 2)
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["line"] for r in records] == list(range(len(SOURCES)))
    assert [r["src"] for r in records] == SOURCES
    for r in records:
        assert len(r["candidates"]) == len(r["seeds"]) == len(r["mbr_scores"]) == 4
        assert len(set(r["seeds"])) == 4
        assert r["best"] == r["candidates"][r["mbr_choice"]]
        assert max(r["mbr_scores"]) == r["mbr_scores"][r["mbr_choice"]]


def test_text_is_one_line_per_source_or_n_lines_per_source(run, model, sources):
    _, jsonl, _ = gen(run, model, "-i", sources, "-n", 3, "--mbr", "--format", "jsonl")
    records = [json.loads(line) for line in jsonl.splitlines()]
    _, all_lines, _ = gen(run, model, "-i", sources, "-n", 3)
    assert all_lines.splitlines() == [" ".join(c.split()) for r in records for c in r["candidates"]]
    _, chosen, _ = gen(run, model, "-i", sources, "-n", 3, "--mbr")
    assert chosen.splitlines() == [" ".join(r["best"].split()) for r in records]
    _, single, _ = gen(run, model, "-i", sources)
    assert len(single.splitlines()) == len(SOURCES)


def test_jsonl_input_is_detected(run, model, tmp_path, sources):
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json.dumps({"src": s, "trg": "x"}) for s in SOURCES[:5]) + "\n\n", encoding="utf-8")
    code, out, _ = gen(run, model, "-i", path, "--format", "jsonl")
    assert code == 0
    assert [json.loads(line)["src"] for line in out.splitlines()] == SOURCES[:5]
    code, _, err = gen(run, model, "-i", sources, "--input-format", "jsonl")
    assert code == 1 and "in.txt:1" in err and "JSON" in err


# --- bad input ---------------------------------------------------------------------------------------
def test_empty_input_gives_no_output(run, model, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    code, out, err = gen(run, model, "-i", empty)
    assert (code, out) == (0, "")
    code, _, _ = gen(run, model, "-i", empty, "-o", tmp_path / "out.txt")
    assert code == 0 and (tmp_path / "out.txt").read_text() == ""


def test_an_empty_line_passes_through_as_an_empty_line(run, model, tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("how do i learn python?\n\nwhy is the sky blue?\n", encoding="utf-8")
    _, out, _ = gen(run, model, "-i", path)
    lines = out.split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[0] and lines[2] and lines[3] == ""
    _, out, _ = gen(run, model, "-i", path, "-n", 2)
    lines = out.split("\n")
    assert lines[2:4] == ["", ""] and all(lines[i] for i in (0, 1, 4, 5))


def test_an_over_long_line_is_truncated_with_a_warning_count(run, model, tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("short question?\n" + "a very long line " * 60 + "\n" + "word " * 300 + "\n", encoding="utf-8")
    code, out, err = gen(run, model, "-i", path)
    assert code == 0 and len(out.splitlines()) == 3
    assert "warning: 2 source line(s)" in err and "truncated" in err
    code, out, _ = gen(run, model, "-i", path, "--format", "jsonl")
    assert [json.loads(line)["truncated"] for line in out.splitlines()] == [False, True, True]


@pytest.mark.parametrize("procs", [[], ["--nproc", "2"]])  # worker processes finish every line before the bad one too
def test_a_bad_line_late_in_the_input_keeps_the_finished_lines_for_resume(run, model, tmp_path, monkeypatch, procs):
    """From a file, a bad line anywhere fails before any work and touches no output; from a stream,
    every line before it is finished and kept, and --resume continues after them."""
    import io

    good = [f"question number {i}?" for i in range(40)]
    path = tmp_path / "bad.txt"
    data = ("\n".join(good) + "\n").encode() + b"second \xff\xfe line\nthird\n"
    path.write_bytes(data)
    out_file = tmp_path / "out.txt"
    code, out, err = gen(run, model, "-i", path, "-o", out_file, "--batch-size", 4, *procs)
    assert code == 1 and "bad.txt:41" in err and "UTF-8" in err and "Traceback" not in err
    assert not out_file.exists() and "finished lines" not in err
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, out, err = gen(run, model, "-i", "-", "-o", out_file, "--batch-size", 4, *procs)
    assert code == 1 and "<stdin>:41" in err and "UTF-8" in err
    kept = out_file.read_text().splitlines()
    assert len(kept) == 40 and f"40 finished lines are in {out_file}" in err and "--resume" in err
    # fixed input, --resume: the same file as one clean run
    path.write_text("\n".join(good + ["second line", "third"]) + "\n")
    code, _, _ = gen(run, model, "-i", path, "-o", out_file, "--batch-size", 4, "--resume", *procs)
    clean = tmp_path / "clean.txt"
    assert code == 0 and gen(run, model, "-i", path, "-o", clean)[0] == 0
    assert out_file.read_bytes() == clean.read_bytes()


def test_unknown_task_and_missing_model_are_usage_errors(run, tmp_path, sources):
    code, _, err = run("generate", "--task", "no-such-task", "-i", sources)
    assert code == 2 and "unknown task 'no-such-task'" in err and "paraphrase" in err
    code, _, err = run("generate", "--task", "simplification", "-i", sources)
    assert code == 2 and "no published model" in err and "diffuseq train" in err
    code, _, err = run("generate", "-m", tmp_path / "missing", "-i", sources)
    assert code == 2 and "no such model folder" in err
    code, _, err = run("generate", "-m", tmp_path / "missing", "-i", tmp_path / "nope.txt")
    assert code == 2 and "nope.txt: no such file" in err


def test_option_errors_are_usage_errors(run, model, sources, tmp_path):
    assert gen(run, model, "-i", sources, "--mbr")[0] == 2  # -n 1
    assert gen(run, model, "-i", sources, "--resume")[0] == 2  # no -o
    assert gen(run, model, "-i", sources, "--format", "csv")[0] == 2
    code, _, err = run("generate", "-m", model, "-i", sources, "--steps", 51)
    assert code == 2 and "T = 50" in err


@pytest.mark.parametrize("procs", ["", "--nproc 2"])
def test_head_ends_the_pipeline_quietly(model, sources, tmp_path, procs):
    many = tmp_path / "many.txt"
    many.write_text("\n".join(SOURCES * 10) + "\n", encoding="utf-8")
    cmd = (f"set -o pipefail; {shlex.quote(sys.executable)} -m diffuseq_cli generate -m {shlex.quote(model)} "
           f"-i {shlex.quote(str(many))} --steps 2 -b 8 {procs} | head -1")
    env, mark = marked_env()
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 1
    assert "Traceback" not in r.stderr and "Error" not in r.stderr
    assert none_left(mark)  # the command and its workers, if any, have ended


# --- resume ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["-n", "3"], ["-n", "2", "--mbr", "--format", "jsonl"]])
def test_resume_after_a_cut_gives_the_same_file(run, model, sources, tmp_path, args):
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert gen(run, model, "-i", sources, "-o", whole, *args)[0] == 0
    data = whole.read_bytes()
    for cut in (0, len(data) // 3, len(data) // 2 + 7, len(data) - 1, len(data)):
        part.write_bytes(data[:cut])  # the job was stopped here, maybe mid-line
        assert gen(run, model, "-i", sources, "-o", part, "--resume", *args)[0] == 0
        assert part.read_bytes() == data, cut


def test_resume_after_the_process_was_killed(run, model, sources, tmp_path):
    out = tmp_path / "out.txt"
    args = ["-i", str(sources), "--steps", "30", "-n", "2", "-q"]
    cmd = [sys.executable, "-m", "diffuseq_cli", "generate", "-m", model, "-o", str(out), "-b", "2", *args]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 6:
                break
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    interrupted = len(out.read_bytes().splitlines()) < 2 * len(SOURCES)
    assert run("generate", "-m", model, "-o", out, "--resume", *args)[0] == 0
    full = tmp_path / "full.txt"
    assert run("generate", "-m", model, "-o", full, *args)[0] == 0
    assert out.read_bytes() == full.read_bytes()
    assert interrupted  # it was stopped part-way, so the resume had work to do (in other batches)


# --- help ---------------------------------------------------------------------------------------------
def _help_examples(run) -> list[str]:
    code, out, _ = run("generate", "--help")
    assert code == 0
    assert "Examples" in out and "[bold]" not in out
    assert "ORG/NAME[@REV]" in out  # brackets survive rich markup
    return [line.strip() for line in out.splitlines() if line.strip().startswith(("diffuseq generate", "echo "))]


def test_help_examples_render_and_work(run, model, tmp_path, monkeypatch):
    examples = _help_examples(run)
    assert len(examples) == 5
    monkeypatch.chdir(tmp_path)
    Path("in.txt").write_text("\n".join(SOURCES[:4]) + "\n", encoding="utf-8")
    Path("big.txt").write_text("\n".join(SOURCES[:6]) + "\n", encoding="utf-8")
    Path("runs/qqp").mkdir(parents=True)
    Path("runs/qqp/latest").symlink_to(model)
    Path("ema_0.9999_050000.pt").symlink_to(OFFICIAL_TINY / "ema_0.9999_000100.pt")
    # The official fixture is bert-shaped but small: 4 heads and a 60-word vocabulary.
    Path("vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [f"w{i}" for i in range(56)]) + "\n")
    monkeypatch.setitem(tasks.TASKS, "paraphrase", tasks.TaskEntry("paraphrase", "test", model))
    for example in examples:
        words = shlex.split(example)
        if words[0] == "echo":  # the same text through -i, since stdin is pytest's
            bar = words.index("|")
            Path("stdin.txt").write_text(" ".join(words[1:bar]) + "\n")
            words = words[bar + 1:] + ["-i", "stdin.txt"]
        target = None
        if ">" in words:
            target = words[words.index(">") + 1]
            words = words[:words.index(">")]
        args = words[1:] + ["-q"]
        if any(a.endswith(".pt") for a in args):
            args += ["--heads", "4"]
        if "--steps" in args:  # the test checkpoint has T = 50
            args[args.index("--steps") + 1] = "50"
        if "--resume" in args:  # interrupt a first run mid-line, then resume it
            fresh = [a for a in args if a != "--resume"]
            assert run(*fresh)[0] == 0
            whole = Path("out.txt").read_bytes()
            Path("out.txt").write_bytes(whole[: len(whole) // 2])
        code, out, err = run(*args)
        assert code == 0, (example, err)
        if target:
            Path(target).write_text(out)
            assert len(out.splitlines()) == 4, example
        elif "-o" not in args:
            assert len(out.splitlines()) == (1 if words[-1] == "stdin.txt" else 4), example
        if "--resume" in args:
            assert Path("out.txt").read_bytes() == whole
    assert len(Path("out.jsonl").read_text().splitlines()) == 4


def test_the_api_samples_with_the_commands_defaults(run, model, sources):
    """DiffuSeq.generate without steps= takes generate's 20 DDIM steps, not all T (one home for the default)."""
    from diffuseq_cli.api import DiffuSeq

    code, out, _ = run("generate", "-m", model, "-i", sources, "-q")
    assert code == 0
    api = DiffuSeq.from_pretrained(model).generate(SOURCES)
    assert [c[0] for c in api] == out.splitlines()
    all_steps = DiffuSeq.from_pretrained(model).generate(SOURCES[:3], steps=50)
    assert [c[0] for c in all_steps] != out.splitlines()[:3]
