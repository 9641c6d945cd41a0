"""The command's front door: --help, --version, start-up cost, exit codes."""

import os
import subprocess
import sys

import pytest

from diffuseq_cli import __version__


def run(*args, **kw):
    return subprocess.run([sys.executable, "-m", "diffuseq_cli", *args], capture_output=True, text=True, **kw)


def test_version():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"diffuseq {__version__}"


@pytest.mark.parametrize("cmd", ["train", "generate", "rerank", "evaluate", "convert"])
def test_every_subcommand_has_help(cmd):
    r = run(cmd, "--help")
    assert r.returncode == 0, r.stderr
    assert "Usage" in r.stdout


def test_cli_import_does_not_import_torch():
    code = "import sys, diffuseq_cli.cli; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "False", r.stderr


def test_library_core_does_not_import_cli_packages():
    code = (
        "import sys, diffuseq_cli.core.model, diffuseq_cli.core.diffusion, diffuseq_cli.core.sampling, diffuseq_cli.evaluation.metrics, "
        "diffuseq_cli.evaluation.mbr, diffuseq_cli.generation.stream, diffuseq_cli.generation.lines, diffuseq_cli.api, "
        "diffuseq_cli.evaluation.report, diffuseq_cli.evaluation.rerank, diffuseq_cli.training.run; "
        "print(sorted(m for m in ('typer', 'rich') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "[]", r.stderr


def test_unknown_option_is_a_usage_error():
    r = run("generate", "--no-such-option")
    assert r.returncode == 2


def test_library_errors_are_one_red_line_without_traceback(tmp_path):
    r = run("convert", str(tmp_path / "missing.pt"), "-o", str(tmp_path / "out"))
    assert r.returncode == 2  # a missing input file is a usage error, for every command
    assert "Traceback" not in r.stderr
    assert "missing.pt" in r.stderr and r.stderr.strip().count("\n") == 0
    # a file that is not a checkpoint: tests/test_bad_input_entry_point.py


@pytest.mark.parametrize("command", ["", "train", "generate", "rerank", "evaluate", "convert"])
def test_help_fits_80_columns_without_placeholders_for_flags(command):
    env = dict(os.environ, COLUMNS="80")
    r = run(*([command] if command else []), "--help", env=env)
    assert r.returncode == 0
    assert all(len(line) <= 80 for line in r.stdout.splitlines()), [l for l in r.stdout.splitlines() if len(l) > 80]
    assert "<bool>" not in r.stdout and "…" not in r.stdout and "[bold]" not in r.stdout
