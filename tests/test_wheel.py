"""A built wheel carries every module and the embedded model and runs `generate --task paraphrase` offline in a fresh venv.

The venv reuses this interpreter's site-packages for the heavy dependencies (torch) but gets
diffuseq only from the wheel, so the check is about what the wheel contains. "This interpreter"
may itself run in a venv (as the README's install does): its site-packages are named in a
``.pth`` file of the new venv, after the venv's own, as plain paths, so the editable install's
import hook in them is not run and the wheel's copy comes first.
"""

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile

from pathlib import Path

import pytest

from paths import ROOT

pytestmark = pytest.mark.slow


def test_wheel_contains_model_and_generates_offline(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)],
                   check=True, capture_output=True)
    wheel = next(dist.glob("diffuseq_cli-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for f in ("config.json", "model.safetensors", "tokenizer.json", "README.md"):
        assert f"diffuseq_cli/models/paraphrase/{f}" in names
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "diffuseq_cli").rglob("*.py")}
    assert sources <= set(names), sorted(sources - set(names))  # every subpackage, every module

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=True).create(env_dir)
    py = env_dir / "bin" / "python"
    own = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True).stdout.strip()
    outer = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (Path(own) / "outer_site_packages.pth").write_text("".join(p + "\n" for p in outer))
    # pip of this interpreter installs into the venv via --prefix-free target: use the venv's python -m pip
    # through the system pip module (system site-packages are visible).
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--force-reinstall", "-q", str(wheel)],
                   check=True, capture_output=True)
    src = tmp_path / "in.txt"
    src.write_text("How do I learn Python quickly?\nWhat is the capital of France?\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    where = subprocess.run([str(py), "-c", "import diffuseq_cli; print(diffuseq_cli.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout
    assert str(env_dir) in where, where  # the wheel's copy, not the source tree
    r = subprocess.run([str(env_dir / "bin" / "diffuseq"), "generate", "--task", "paraphrase", "-i", str(src),
                        "-n", "5", "--mbr", "--steps", "5", "-q"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 2
