"""Model resolution: local paths, tasks, and Hub downloads against a fake Hub on 127.0.0.1.

The fake Hub (`helpers_hub.FakeHub`) answers the requests `snapshot_download` makes; the tests
assert that no other path was requested. One test runs in fresh subprocesses to show that the
plain environment variables are honoured.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import constants
from huggingface_hub.utils import are_progress_bars_disabled

from diffuseq_cli.errors import DiffuseqError, UsageError
from diffuseq_cli.modelfiles import tasks
from diffuseq_cli.modelfiles.hub import resolve_model

from helpers_hub import FakeHub, go_offline, hub_env, serve_hub


def model_files(tag: bytes) -> dict[str, bytes]:
    return {
        "config.json": b'{"format_version": 1, "tag": "%s"}' % tag,
        "model.safetensors": bytes(range(200)) + tag,
        "tokenizer.json": b'{"model": {"type": "WordLevel"}}',
        "README.md": b"# tiny\n" + tag,
        "modeling.py": b"raise SystemExit('never fetched')\n",  # outside the allow-list: must not be fetched
    }


COMMIT_OLD = hashlib.sha1(b"old").hexdigest()
COMMIT_NEW = hashlib.sha1(b"new").hexdigest()
REPOS = {
    "org/tiny": {
        "refs": {"main": COMMIT_NEW, "v1": COMMIT_OLD},
        "commits": {COMMIT_OLD: model_files(b"old"), COMMIT_NEW: model_files(b"new")},
    },
    "org/official": {
        "refs": {"main": COMMIT_NEW},
        "commits": {COMMIT_NEW: {
            "training_args.json": b'{"hidden_dim": 16}',
            "ema_0.9999_000100.pt": b"\x80pt100",
            "ema_0.9999_000200.pt": b"\x80pt200",
        }},
    },
}


@pytest.fixture
def hub(tmp_path, monkeypatch):
    server = serve_hub(tmp_path, monkeypatch, REPOS)
    yield server
    server.stop()


def blob_of(model, name: str) -> Path:
    return (model.path / name).resolve()


def test_hub_download_then_offline(hub, monkeypatch):
    bars_were_disabled = are_progress_bars_disabled()
    model = resolve_model("org/tiny", quiet=True)
    assert are_progress_bars_disabled() == bars_were_disabled  # `quiet` does not leak into the process
    assert model.kind == "folder" and model.source == f"hub:org/tiny@{COMMIT_NEW}"
    assert (model.path / "config.json").read_bytes() == REPOS["org/tiny"]["commits"][COMMIT_NEW]["config.json"]
    assert not (model.path / "modeling.py").exists() and hub.fetched("modeling.py") == 0
    assert hub.fetched("model.safetensors") == 1
    allowed = ("/api/models/org/tiny/revision/main", "/api/models/org/tiny/tree/", "/org/tiny/resolve/")
    assert all(p.startswith(allowed) for _, p in hub.requests), hub.requests  # nothing xet-related

    go_offline(hub, monkeypatch)
    again = resolve_model("org/tiny", quiet=True)
    assert again == model


def test_pinned_revision(hub):
    old = resolve_model("org/tiny@v1", quiet=True)
    assert old.source == f"hub:org/tiny@{COMMIT_OLD}" and old.path.name == COMMIT_OLD
    assert b"old" in (old.path / "config.json").read_bytes()
    assert resolve_model(f"org/tiny@{COMMIT_OLD}", quiet=True).path == old.path
    with pytest.raises(UsageError, match="no revision 'v9'"):
        resolve_model("org/tiny@v9", quiet=True)


def test_corrupt_blob_is_fetched_again(hub):
    model = resolve_model("org/tiny", quiet=True)
    blob = blob_of(model, "model.safetensors")
    blob.write_bytes(b"\0" * blob.stat().st_size)  # same size: only a content check notices
    messages = []
    repaired = resolve_model("org/tiny", quiet=True, on_message=messages.append)
    assert repaired == model and hub.fetched("model.safetensors") == 2
    assert (model.path / "model.safetensors").read_bytes() == REPOS["org/tiny"]["commits"][COMMIT_NEW]["model.safetensors"]
    assert messages and "model.safetensors" in messages[0]


def test_corrupt_git_file_offline_is_a_clear_error(hub, monkeypatch):
    model = resolve_model("org/tiny", quiet=True)
    blob_of(model, "config.json").write_bytes(b'{"format_version": 9}')
    go_offline(hub, monkeypatch)
    with pytest.raises(DiffuseqError, match="config.json of org/tiny was corrupt and has been removed"):
        resolve_model("org/tiny", quiet=True)
    assert not (model.path / "config.json").exists()  # nobody reads the bad bytes again
    with pytest.raises(DiffuseqError, match="not fully cached"):
        resolve_model("org/tiny", quiet=True)


def test_server_sending_wrong_bytes_is_refused(hub):
    hub.tamper.add("model.safetensors")
    with pytest.raises(DiffuseqError, match="does not match its checksum after a fresh download"):
        resolve_model("org/tiny", quiet=True)
    assert hub.fetched("model.safetensors") == 2
    assert not list(Path(constants.HF_HUB_CACHE).rglob("model.safetensors"))


def test_official_checkpoint_on_hub_picks_newest_ema(hub):
    model = resolve_model("org/official", quiet=True)
    assert model.kind == "official" and model.path.name == "ema_0.9999_000200.pt"


def test_no_network_nothing_cached(hub, monkeypatch):
    hub.stop()  # connection refused, not offline mode
    with pytest.raises(DiffuseqError, match="cannot be downloaded"):
        resolve_model("org/tiny", quiet=True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DiffuseqError, match="HF_HUB_OFFLINE"):
        resolve_model("org/tiny", quiet=True)


def test_unknown_hub_repo(hub):
    with pytest.raises(UsageError, match="no Hub model org/missing"):
        resolve_model("org/missing", quiet=True)


def test_cached_model_is_used_when_the_server_is_unreachable(hub):
    """Not offline mode: the network is simply gone (connection refused), and the cache serves."""
    latest = resolve_model("org/tiny", quiet=True)
    pinned = resolve_model("org/tiny@v1", quiet=True)
    hub.stop()
    assert not constants.HF_HUB_OFFLINE and "HF_HUB_OFFLINE" not in os.environ
    assert resolve_model("org/tiny", quiet=True) == latest
    assert resolve_model("org/tiny@v1", quiet=True) == pinned
    assert (latest.path / "model.safetensors").read_bytes() == REPOS["org/tiny"]["commits"][COMMIT_NEW]["model.safetensors"]


def test_a_cache_without_symlinks_is_refused(hub, monkeypatch):
    """HF_HUB_DISABLE_SYMLINKS copies files into the snapshot: nothing links them to a checksum, so no check is possible."""
    monkeypatch.setenv("HF_HUB_DISABLE_SYMLINKS", "1")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_SYMLINKS", True)
    with pytest.raises(DiffuseqError, match="must use symlinks.*unset HF_HUB_DISABLE_SYMLINKS"):
        resolve_model("org/tiny", quiet=True)


def test_environment_variables_are_honoured(tmp_path):
    """Fresh interpreters that see only the environment: download, then offline from the cache."""
    server = FakeHub(REPOS)
    env = {**os.environ, **hub_env(tmp_path, server.url)}
    for key in ("HF_HUB_OFFLINE", "HF_TOKEN", "HF_HUB_DISABLE_SYMLINKS"):
        env.pop(key, None)
    code = "from diffuseq_cli.modelfiles.hub import resolve_model; m = resolve_model('org/tiny', quiet=True); print(m.source, m.path)"
    try:
        first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    finally:
        server.stop()
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"hub:org/tiny@{COMMIT_NEW} {tmp_path / 'hf' / 'hub'}")
    assert server.fetched("config.json") == 1
    second = subprocess.run([sys.executable, "-c", code], env={**env, "HF_HUB_OFFLINE": "1"},
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout


# Local paths and tasks: no server needed.

def make_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    for name, content in model_files(b"local").items():
        (path / name).write_bytes(content)
    return path


def test_local_folder(tmp_path):
    folder = make_folder(tmp_path / "model")
    model = resolve_model(str(folder))
    assert model.kind == "folder" and model.path == folder.resolve() and model.source == f"local:{folder.resolve()}"


def test_local_official_file_and_run_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "training_args.json").write_text("{}")
    for step in ("000900", "001000", "000100"):
        (run / f"ema_0.9999_{step}.pt").write_bytes(b"x")
    assert resolve_model(str(run)) == resolve_model(str(run / "ema_0.9999_001000.pt"))
    assert resolve_model(str(run)).kind == "official"


@pytest.mark.parametrize("spec, message", [
    ("./no/such/dir", "no such model folder"),
    ("no-such-thing", "no such model folder"),
    ("runs/ema_0.9999_000100.pt", "no such model folder"),  # looks like ORG/NAME, but a .pt is a file
])
def test_unknown_path(spec, message):
    with pytest.raises(UsageError, match=message):
        resolve_model(spec)


def test_existing_folder_that_is_not_a_model(tmp_path):
    with pytest.raises(UsageError, match="not a model folder"):
        resolve_model(str(tmp_path))


def test_unknown_task():
    with pytest.raises(UsageError, match="unknown task 'poetry'; known tasks: dialogue, paraphrase"):
        resolve_model(task="poetry")


def test_task_without_model_says_how_to_get_one():
    with pytest.raises(UsageError, match="diffuseq train data.jsonl.*runs/NAME/latest.*diffuseq convert"):
        resolve_model(task="dialogue")


def test_default_task_uses_embedded_folder(tmp_path, monkeypatch):
    folder = make_folder(tmp_path / "paraphrase")
    monkeypatch.setitem(tasks.TASKS, "paraphrase", tasks.TaskEntry("paraphrase", "", str(folder), embedded=True))
    model = resolve_model()
    assert model.kind == "folder" and model.path == folder and model.source.startswith("task:paraphrase local:")


def test_embedded_folder_missing(tmp_path, monkeypatch):
    entry = tasks.TaskEntry("paraphrase", "", str(tmp_path / "gone"), embedded=True)
    monkeypatch.setitem(tasks.TASKS, "paraphrase", entry)
    with pytest.raises(DiffuseqError, match="not included in this installation.*diffuseq convert"):
        resolve_model(task="paraphrase")
