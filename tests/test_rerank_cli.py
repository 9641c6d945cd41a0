"""`diffuseq rerank`: the three input layouts, n-best and JSONL output, -o, and errors."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from diffuseq_cli.cli import app, main
from diffuseq_cli.evaluation.mbr import mbr_select

from paths import FIXTURES, require_shared

require_shared(module=True)
FIXTURE = FIXTURES / "eval-qqp-valid"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())
CANDS = [str(FIXTURE / f"cand{k}.txt") for k in range(5)]
COLUMNS = [Path(c).read_text(encoding="utf-8").split("\n")[:200] for c in CANDS]
SETS = [list(row) for row in zip(*COLUMNS)]
OFFICIAL_BEST = [SETS[i][k] for i, k in enumerate(EXPECTED["mbr_choice"])]


@pytest.fixture
def run(capsys):
    def invoke(*args):
        with pytest.raises(SystemExit) as exit_info:
            main(["rerank", *map(str, args)])
        out, err = capsys.readouterr()
        return exit_info.value.code or 0, out, err

    return invoke


def _consecutive(tmp_path, sets=SETS):
    path = tmp_path / "consecutive.txt"
    path.write_text("\n".join(c for s in sets for c in s) + "\n", encoding="utf-8")
    return path


def _jsonl(tmp_path, sets=SETS):
    path = tmp_path / "generated.jsonl"
    lines = [json.dumps({"src": f"source {i}", "candidates": s}) for i, s in enumerate(sets)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_aligned_files_give_the_official_choice(run):
    code, out, _ = run(*CANDS)
    assert code == 0
    assert out.split("\n")[:-1] == OFFICIAL_BEST


def test_consecutive_lines_with_n(run, tmp_path):
    code, out, _ = run(_consecutive(tmp_path), "-n", 5)
    assert code == 0
    assert out.split("\n")[:-1] == OFFICIAL_BEST


def test_jsonl_is_detected_and_fields_pass_through(run, tmp_path):
    code, out, _ = run(_jsonl(tmp_path), "--format", "jsonl", "--nbest", 2)
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["choice"] for r in records] == EXPECTED["mbr_choice"]
    first = records[0]
    assert first["src"] == "source 0" and first["candidates"] == SETS[0]
    assert first["best"] == SETS[0][first["choice"]] and first["nbest"][0] == first["best"]
    assert first["scores"] == pytest.approx(mbr_select(SETS[0]).scores, abs=1e-15)


def test_jsonl_from_stdin(tmp_path):
    data = _jsonl(tmp_path, SETS[:20]).read_text(encoding="utf-8")
    result = CliRunner().invoke(app, ["rerank", "-"], input=data)
    assert result.exit_code == 0, result.output
    assert result.output.split("\n")[:-1] == OFFICIAL_BEST[:20]


def test_nbest_text_prints_n_lines_per_source_best_first(run):
    code, out, _ = run(*CANDS, "--nbest", 3)
    lines = out.split("\n")[:-1]
    assert code == 0 and len(lines) == 3 * 200
    for i in (0, 1, 50):
        out_i = mbr_select(SETS[i])
        assert lines[3 * i : 3 * i + 3] == [SETS[i][k] for k in out_i.ranking()[:3]]
        assert lines[3 * i] == OFFICIAL_BEST[i]


@pytest.mark.parametrize("metric", ["rouge_l", "chrf"])
def test_other_metrics(run, metric):
    code, out, _ = run(*CANDS, "--metric", metric)
    assert code == 0
    assert out.split("\n")[:-1] == [s[mbr_select(s, metric).index] for s in SETS]


def test_output_file(run, tmp_path):
    target = tmp_path / "best.txt"
    code, out, _ = run(*CANDS, "-o", target)
    assert code == 0 and out == ""
    assert target.read_text(encoding="utf-8").split("\n")[:-1] == OFFICIAL_BEST


def test_failure_leaves_no_output_file(run, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("a\nb\n")
    target = tmp_path / "best.txt"
    code, _, err = run(CANDS[0], short, "-o", target)
    assert code == 1
    assert "short.txt has 2 lines" in err and "cand0.txt has 200" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["short.txt"]


@pytest.mark.parametrize("layout", ["consecutive", "jsonl"])
def test_a_bad_line_late_in_a_file_fails_before_any_result_is_written(run, tmp_path, layout):
    """Regular files are read through before the first result goes out: stdout gets nothing partial."""
    path = _consecutive(tmp_path) if layout == "consecutive" else _jsonl(tmp_path)
    path.write_bytes(path.read_bytes() + (b"\xff broken\n" * (5 if layout == "consecutive" else 1)))
    code, out, err = run(path, *(["-n", "5"] if layout == "consecutive" else []))
    assert code == 1 and out == ""
    assert f"{path.name}:{1001 if layout == 'consecutive' else 201}:" in err and "UTF-8" in err


@pytest.mark.parametrize(
    "make_args, code, pieces",
    [
        (lambda t: [CANDS[0]], 2, ["needs -n K"]),
        (lambda t: [t / "three.txt", "-n", "2"], 1, ["three.txt has 3 lines, not a multiple of -n 2"]),
        (lambda t: [t / "bad.jsonl"], 1, ["bad.jsonl:2:", "not valid JSON"]),
        (lambda t: [t / "nocands.jsonl"], 1, ["nocands.jsonl:1:", '"candidates"']),
        (lambda t: [*CANDS[:2], "--nbest", "3"], 1, ["fewer than --nbest 3"]),
        (lambda t: [*CANDS[:2], "-n", "3"], 2, ["-n 3 does not match the 2 candidate files"]),
        (lambda t: [*CANDS, "--metric", "meteor"], 2, ["meteor"]),
        (lambda t: [t / "nothere.txt", "-n", "2"], 2, ["nothere.txt: no such file"]),
        (lambda t: [t / "bad.txt", "-n", "1"], 1, ["bad.txt:1:", "not valid UTF-8"]),
    ],
)
def test_errors_are_one_clear_line(run, tmp_path, make_args, code, pieces):
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    (tmp_path / "bad.jsonl").write_text('{"candidates": ["a", "b"]}\n{"candidates": [\n')
    (tmp_path / "nocands.jsonl").write_text('{"src": "x"}\n')
    (tmp_path / "bad.txt").write_bytes(b"\xc3\x28 broken\n")
    got, out, err = run(*make_args(tmp_path))
    assert got == code
    for piece in pieces:
        assert piece in err
    assert "Traceback" not in err


@pytest.mark.parametrize("layout", ["consecutive", "aligned", "jsonl"])
def test_streams_one_source_at_a_time(tmp_path, monkeypatch, layout):
    """When the first result arrives, only the first source's lines have been read (and so on)."""
    from diffuseq_cli.evaluation import rerank as rerank_mod

    consumed = {"lines": 0}
    original = rerank_mod.iter_lines

    def counting(path):
        for line in original(path):
            consumed["lines"] += 1
            yield line

    monkeypatch.setattr(rerank_mod, "iter_lines", counting)
    paths, per_line, lines_per_source = {
        "consecutive": ([_consecutive(tmp_path)], 5, 5),
        "aligned": (CANDS, None, 5),  # one line of each of the 5 files
        "jsonl": ([_jsonl(tmp_path)], None, 1),
    }[layout]
    results = rerank_mod.rerank(rerank_mod.read_candidate_sets(paths, per_line=per_line))
    assert consumed["lines"] <= 1  # at most the first line (it tells JSONL from text) before a result is asked for
    for i in range(3):
        assert next(results).best == OFFICIAL_BEST[i]
        assert consumed["lines"] == (i + 1) * lines_per_source
