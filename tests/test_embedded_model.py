"""The paraphrase model shipped inside the package: loads offline, generates deterministically."""

import os
import subprocess
import sys

from diffuseq_cli.modelfiles.tasks import EMBEDDED_MODELS, resolve_task

MODEL = EMBEDDED_MODELS / "paraphrase"  # tracked in git: its absence is a failure, never a skip

SOURCES = ["How can I improve my English speaking skills?", "What is the best way to learn programming?"]


def test_task_paraphrase_resolves_to_the_embedded_folder():
    assert resolve_task("paraphrase") == str(MODEL)


def test_embedded_model_is_small_and_documented():
    size = sum(p.stat().st_size for p in MODEL.iterdir())
    assert size < 30 * 1024 * 1024
    card = (MODEL / "README.md").read_text()
    for needle in ("Quora", "non-commercial", "BLEU", "copy"):
        assert needle in card


def test_embedded_model_generates_deterministically():
    from diffuseq_cli import DiffuSeq

    model = DiffuSeq.from_pretrained(task="paraphrase")
    a = model.generate(SOURCES, num_samples=3, steps=10, seed=7)
    b = model.generate(SOURCES, num_samples=3, steps=10, seed=7, batch_size=1)
    c = model.generate(SOURCES, num_samples=3, steps=10, seed=8)
    assert a == b
    assert a != c
    assert all(isinstance(x, str) and x.strip() for cands in a for x in cands)


def test_cli_default_task_works_offline(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(SOURCES) + "\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "diffuseq_cli", "generate", "-i", str(src), "-n", "3", "--mbr", "--steps", "5", "-q"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 2
