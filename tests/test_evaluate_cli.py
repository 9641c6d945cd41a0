"""`diffuseq evaluate` through the real entry point: outputs, exit codes and one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from diffuseq_cli.cli import main

from paths import FIXTURES, require_shared

require_shared(module=True)
FIXTURE = FIXTURES / "eval-qqp-valid"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())
CANDS = [str(FIXTURE / f"cand{k}.txt") for k in range(5)]
REFS = str(FIXTURE / "refs.txt")


@pytest.fixture
def run(capsys):
    def invoke(*args):
        with pytest.raises(SystemExit) as exit_info:
            main(["evaluate", *map(str, args)])
        out, err = capsys.readouterr()
        return exit_info.value.code or 0, out, err

    return invoke


def _assert_official(data):
    for got, want in zip(data["files"], EXPECTED["per_file"], strict=True):
        for key, value in want.items():
            assert got[key] == pytest.approx(value, abs=1e-9), key
    assert data["self_bleu"] == pytest.approx(EXPECTED["self_bleu"], abs=1e-9)
    assert data["div_4"] == pytest.approx(EXPECTED["div_4"], abs=1e-9)
    assert data["mbr_choice"] == EXPECTED["mbr_choice"]
    for key, value in EXPECTED["mbr"].items():
        assert data["mbr"][key] == pytest.approx(value, abs=1e-9), key


def test_json_equals_official_numbers(run):
    code, out, err = run(*CANDS, REFS, "--mbr", "--format", "json", "--sources", FIXTURE / "sources.txt")
    assert code == 0
    data = json.loads(out)
    _assert_official(data)
    assert [f["name"] for f in data["files"]] == CANDS
    assert data["source"]["name"] == "source" and 0 < data["source"]["bleu"] < data["files"][0]["bleu"]
    assert data["signature"].startswith("diffuseq-eval|bleu:nltk-s4|") and "|n:5|" in data["signature"]
    assert set(data) == {"signature", "lines", "samples", "files", "self_bleu", "div_4", "mbr", "mbr_choice", "source"}


def test_consecutive_layout_with_n_and_refs_option(run, tmp_path):
    columns = [Path(c).read_text(encoding="utf-8").split("\n")[:200] for c in CANDS]
    interleaved = tmp_path / "samples.txt"
    interleaved.write_text("\n".join(line for row in zip(*columns) for line in row) + "\n", encoding="utf-8")
    code, out, _ = run(interleaved, "--refs", REFS, "-n", 5, "--mbr", "-f", "json")
    assert code == 0
    data = json.loads(out)
    _assert_official(data)
    assert data["files"][1]["name"] == f"{interleaved}#2"


def test_text_format_is_name_equals_value(run):
    code, out, _ = run(CANDS[0], REFS, "--format", "text")
    assert code == 0
    pairs = dict(line.split(" = ", 1) for line in out.splitlines())
    assert float(pairs[f"bleu[{CANDS[0]}]"]) == pytest.approx(EXPECTED["per_file"][0]["bleu"], abs=1e-12)
    assert pairs["signature"].endswith("|n:1|v:0.1.0")
    assert "self_bleu" not in pairs


def test_table_goes_to_stderr_and_stdout_stays_empty(run):
    code, out, err = run(*CANDS[:2], REFS, "--mbr")
    assert code == 0
    assert out == ""
    assert "BLEU" in err and "mbr" in err and "self-BLEU" in err and "diffuseq-eval|" in err
    assert f"{EXPECTED['per_file'][0]['bleu']:.4f}" in err


def test_bom_and_crlf_give_the_same_numbers(run, tmp_path):
    refs = Path(REFS).read_text(encoding="utf-8")
    crlf = tmp_path / "refs_crlf.txt"
    crlf.write_bytes(b"\xef\xbb\xbf" + refs.replace("\n", "\r\n").encode())
    _, plain, _ = run(CANDS[0], REFS, "-f", "json")
    code, converted, _ = run(CANDS[0], crlf, "-f", "json")
    assert code == 0
    assert json.loads(plain)["files"][0]["bleu"] == json.loads(converted)["files"][0]["bleu"]


def test_empty_lines_are_empty_hypotheses(run, tmp_path):
    preds = tmp_path / "empty.txt"
    preds.write_text("\n" * 200)
    code, out, _ = run(preds, REFS, "-f", "json")
    assert code == 0
    row = json.loads(out)["files"][0]
    assert (row["bleu"], row["rouge_l"], row["dist_1"], row["avg_len"]) == (0.0, 0.0, 0.0, 1.0)


@pytest.mark.parametrize(
    "make_args, code, pieces",
    [
        (lambda t: [t / "short.txt", REFS], 1, ["short.txt has 3 lines", "refs.txt has 200"]),
        (lambda t: [t / "missing.txt", REFS], 2, ["missing.txt: no such file"]),
        (lambda t: [t / "bad.txt", t / "bad.txt"], 1, ["bad.txt:2:", "not valid UTF-8", "0xff"]),
        (lambda t: [REFS], 2, ["references file"]),
        (lambda t: [t / "short.txt", REFS, "-n", "2"], 1, ["-n 2", "200 x 2 = 400"]),
        (lambda t: [CANDS[0], REFS, "--sources", t / "short.txt"], 1, ["short.txt has 3 lines"]),
        (lambda t: [CANDS[0], REFS, "--format", "yaml"], 2, ["yaml"]),
    ],
)
def test_errors_are_one_clear_line(run, tmp_path, make_args, code, pieces):
    (tmp_path / "short.txt").write_text("a\nb\nc\n")
    (tmp_path / "bad.txt").write_bytes(b"fine\nbad \xff byte\n")
    got, out, err = run(*make_args(tmp_path))
    assert got == code
    assert out == ""
    for piece in pieces:
        assert piece in err
    assert "Traceback" not in err


def test_bertscore_without_the_extra_says_how_to_install(run, monkeypatch):
    monkeypatch.setitem(sys.modules, "bert_score", None)  # makes `import bert_score` fail
    code, out, err = run(CANDS[0], REFS, "--bertscore")
    assert code == 1
    assert "pip install 'diffuseq-cli[bertscore]'" in err


def test_module_entry_point_separates_data_and_diagnostics():
    proc = subprocess.run(
        [sys.executable, "-m", "diffuseq_cli", "evaluate", CANDS[0], REFS, "-f", "json"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["files"][0]["bleu"] == pytest.approx(EXPECTED["per_file"][0]["bleu"], abs=1e-12)
    assert proc.stderr == ""


def test_help_shows_examples(run):
    code, out, _ = run("--help")
    assert code == 0
    assert "diffuseq evaluate preds.txt refs.txt" in out


def test_predictions_from_stdin():
    from typer.testing import CliRunner

    from diffuseq_cli.cli import app

    result = CliRunner().invoke(app, ["evaluate", "-", REFS, "-f", "json"], input=Path(CANDS[0]).read_bytes())
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)["files"][0]
    assert row["name"] == "<stdin>"
    assert row["bleu"] == pytest.approx(EXPECTED["per_file"][0]["bleu"], abs=1e-12)
