"""Find the model a command should load: a local folder, an official `.pt`, a task, or the Hub.

Hub downloads go through `huggingface_hub.snapshot_download` into the standard Hugging Face
cache, so HF_HOME / HF_HUB_CACHE / HF_ENDPOINT / HF_TOKEN / HF_HUB_OFFLINE mean what they mean
everywhere else, and a model fetched once keeps working offline. The library checks sizes but
not content, so every snapshot we return is checked here against the cache's own blob names
(the file's etag: sha256 for LFS files, git blob sha1 for the rest). Checking costs one read of
the files, which are small next to loading them, so it runs every time rather than trusting a
marker file that could outlive the bytes it vouched for.

`huggingface_hub` is imported inside the functions that need it, so that local models and
`import diffuseq_cli.cli` do not pay for it.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Literal

from ..errors import DiffuseqError, UsageError
from . import tasks

# Everything a model folder or an official checkpoint needs; nothing that could be executed.
HUB_FILES = ["config.json", "model.safetensors", "tokenizer.json", "README.md", "*.pt", "training_args.json"]
# What ``train --init`` needs: a model folder, or a BERT (its tokenizer as tokenizer.json or vocab.txt, and
# whether a vocab.txt is lower-cased); a BERT with pickled weights only is fetched in a second pass.
INIT_FILES = ["config.json", "model.safetensors", "tokenizer.json", "vocab.txt", "tokenizer_config.json"]
INIT_FALLBACK_WEIGHTS = "pytorch_model.bin"

_REPO_SPEC = re.compile(r"(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<rev>[\w./-]+))?")
# --init also takes the Hub's names without an organisation (bert-base-uncased)
_INIT_SPEC = re.compile(r"(?P<repo>(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*)(?:@(?P<rev>[\w./-]+))?")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHA1 = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class ResolvedModel:
    """Where the weights are. `path` is a model folder (kind "folder") or a `.pt` file (kind "official");
    `source` says where they came from, for logs and model cards (Hub: `hub:ORG/NAME@COMMIT`)."""

    path: Path
    kind: Literal["folder", "official"]
    source: str


def resolve_model(
    spec: str | None = None,
    task: str | None = None,
    *,
    quiet: bool = False,
    on_message: Callable[[str], None] | None = None,
) -> ResolvedModel:
    """Resolve `spec` (a path or `ORG/NAME[@REVISION]`), or else `task` (default "paraphrase").

    An existing path wins over a Hub name, so `runs/x` is never sent to the Hub when it exists.
    `quiet` silences huggingface_hub's progress bars; `on_message` hears about repairs to the cache.
    """
    if spec is None:
        name = task or tasks.DEFAULT_TASK
        model = resolve_model(tasks.resolve_task(name), quiet=quiet, on_message=on_message)
        return replace(model, source=f"task:{name} {model.source}")
    path = Path(spec).expanduser()
    if path.exists():
        return _local(path)
    match = _REPO_SPEC.fullmatch(spec)
    if match and not spec.startswith((".", "/", "~")) and not spec.endswith(".pt"):
        return _from_hub(match["repo"], match["rev"], quiet=quiet, on_message=on_message)
    raise UsageError(f"no such model folder or file: {spec} (expected a folder, a .pt file or ORG/NAME[@REVISION])")


def resolve_init(spec: str, *, quiet: bool = False, on_message: Callable[[str], None] | None = None) -> ResolvedModel:
    """``train --init``: an existing folder (a model folder, a run folder, a BERT folder), else a Hub id.

    Hub ids are ``ORG/NAME[@REVISION]`` or a name alone (``bert-base-uncased``); only the files a
    starting model needs are fetched (``INIT_FILES``), and ``pytorch_model.bin`` only when the
    snapshot has no ``model.safetensors``.
    """
    path = Path(spec).expanduser()
    if path.exists():
        model = _local(path)
        if model.kind != "folder":
            raise UsageError(f"{model.path} is an official checkpoint: convert it first (diffuseq convert), "
                             "then start from the model folder")
        return model
    match = _INIT_SPEC.fullmatch(spec)
    if not match or spec.startswith((".", "~")):
        raise UsageError(f"no such folder: {spec} (expected a model folder, a BERT folder or a Hub id such as bert-base-uncased)")
    model = _from_hub(match["repo"], match["rev"], quiet=quiet, on_message=on_message, files=INIT_FILES)
    if not (model.path / "model.safetensors").is_file():
        model = _from_hub(match["repo"], model.path.name, quiet=quiet, on_message=on_message, files=[INIT_FALLBACK_WEIGHTS])
    return model


def locate(source: str) -> Path:
    """The folder a ``local:PATH`` or ``hub:REPO@COMMIT`` source names, without the network (a Hub
    snapshot must be in the cache, and is verified as at download)."""
    kind, _, where = source.partition(":")
    if kind == "local":
        return Path(where)
    repo, _, commit = where.rpartition("@")
    if kind != "hub" or not repo or not _SHA1.fullmatch(commit):
        raise UsageError(f"not a model source: {source} (expected local:PATH or hub:REPO@COMMIT)")
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    snapshot = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo, repo_type="model") / "snapshots" / commit
    if not snapshot.is_dir():
        raise DiffuseqError(f"{repo}@{commit} is no longer in the Hugging Face cache ({constants.HF_HUB_CACHE}); "
                            "run again with network access to download it")
    _verify_snapshot(repo, snapshot, None)
    return snapshot


def _is_run_folder(path: Path) -> bool:
    """A ``diffuseq train`` run folder: checkpoints beside a training config (not a model config)."""
    return (path / "checkpoints").is_dir() and not (path / "model.safetensors").is_file()


def _local(path: Path) -> ResolvedModel:
    """Classify an existing path; an error says what a model folder should hold."""
    path = path.resolve()
    source = f"local:{path}"
    if path.is_file():
        if path.suffix == ".pt":
            return ResolvedModel(path, "official", source)
        raise UsageError(f"{path} is not a model: expected a model folder or an official .pt checkpoint")
    if _is_run_folder(path):  # a training run: its latest complete checkpoint
        from .run_folder import latest_checkpoint

        latest = latest_checkpoint(path)
        if latest is None:
            raise UsageError(f"{path} is a training run with no complete checkpoint yet")
        return ResolvedModel(latest.resolve(), "folder", f"local:{latest.resolve()}")
    if (path / "config.json").is_file():
        return ResolvedModel(path, "folder", source)
    if (path / "training_args.json").is_file() and (ema := _newest_ema(path)) is not None:
        return ResolvedModel(ema, "official", f"local:{ema}")
    raise UsageError(
        f"{path} is not a model folder: expected config.json (a diffuseq model) "
        "or ema_*.pt with training_args.json (an official DiffuSeq run)"
    )


def _newest_ema(folder: Path) -> Path | None:
    """The EMA checkpoint with the highest step (`ema_0.9999_050000.pt`); mtime breaks ties."""
    def key(p: Path) -> tuple[int, float]:
        step = re.search(r"(\d+)\.pt$", p.name)
        return (int(step[1]) if step else -1, p.stat().st_mtime)

    candidates = [p for p in folder.glob("ema_*.pt") if p.is_file()]
    return max(candidates, key=key) if candidates else None


def _from_hub(repo: str, revision: str | None, *, quiet: bool,
              on_message: Callable[[str], None] | None, files: list[str] = HUB_FILES) -> ResolvedModel:
    """Download (or find in the cache) the ``files`` of a pinned snapshot, verify them, and classify it."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    revision = revision or "main"
    silenced = quiet and not are_progress_bars_disabled()
    if silenced:
        disable_progress_bars()
    try:
        snapshot = Path(_snapshot(repo, revision, files))
        _verify_snapshot(repo, snapshot, on_message)
    finally:
        if silenced:
            enable_progress_bars()
    commit = snapshot.name  # the cache names snapshot folders by commit hash
    source = f"hub:{repo}@{commit}"
    if (snapshot / "config.json").is_file():
        return ResolvedModel(snapshot, "folder", source)
    ema = _newest_ema(snapshot) or max(snapshot.glob("*.pt"), default=None)
    if ema is not None:
        return ResolvedModel(ema, "official", source)
    raise DiffuseqError(f"{repo}@{revision} on the Hub holds no model: expected config.json or an official .pt file")


def _snapshot(repo: str, revision: str, files: list[str]) -> str:
    """`snapshot_download` with its exceptions turned into one-line messages that say what to do."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import (
        GatedRepoError, HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError,
    )

    where = f"{repo}@{revision}"
    try:
        return snapshot_download(repo, revision=revision, allow_patterns=files)
    except GatedRepoError as e:
        raise DiffuseqError(f"{where} is gated on the Hub: accept its terms and set HF_TOKEN") from e
    except RepositoryNotFoundError as e:
        raise UsageError(f"no local folder {repo} and no Hub model {repo} (private? set HF_TOKEN)") from e
    except RevisionNotFoundError as e:
        raise UsageError(f"the Hub model {repo} has no revision '{revision}'") from e
    except HFValidationError as e:
        raise UsageError(f"not a Hub model name: {repo}") from e
    except LocalEntryNotFoundError as e:  # offline or unreachable, and not (fully) in the cache
        raise DiffuseqError(
            f"no local folder {repo}, and {where} cannot be downloaded (no network, or HF_HUB_OFFLINE=1) "
            "and is not fully cached; connect once to fetch it, or pass a local model folder"
        ) from e
    except OSError as e:  # HTTP errors, disk errors
        raise DiffuseqError(f"downloading {where} failed: {e}") from e


def _verify_snapshot(repo: str, snapshot: Path, on_message: Callable[[str], None] | None) -> None:
    """Check every file against its blob name; a bad file is removed and fetched once more."""
    for file in sorted(p for p in snapshot.rglob("*") if not p.is_dir()):
        name = file.relative_to(snapshot).as_posix()
        if _blob_matches(file):
            continue
        _discard(name, file)
        if _offline():
            raise DiffuseqError(
                f"cached file {name} of {repo} was corrupt and has been removed; "
                "run again with network access (without HF_HUB_OFFLINE=1) to download it again"
            )
        if on_message is not None:
            on_message(f"cached file {name} of {repo} was corrupt; downloading it again")
        _refetch(repo, snapshot.name, name)
        if not _blob_matches(file):
            _discard(name, file)
            raise DiffuseqError(f"{name} of {repo}@{snapshot.name} does not match its checksum after a fresh download")


def _blob_matches(file: Path) -> bool:
    """Does the content hash to the name of the blob the snapshot links to?

    The cache names each blob by the file's etag: sha256 of the content for LFS files, and the git
    blob id `sha1(b"blob <size>\\0" + content)` for the rest. A file that is not such a link (no
    symlinks, HF_HUB_DISABLE_SYMLINKS) or a blob named otherwise cannot be checked: that is an error,
    not a pass.
    """
    if not file.is_symlink():
        raise DiffuseqError(f"cannot verify {file}: the Hugging Face cache must use symlinks "
                            "(unset HF_HUB_DISABLE_SYMLINKS)")
    blob = file.resolve()
    if not blob.is_file():
        return False  # dangling link: the blob is gone
    etag = blob.name
    if _SHA256.fullmatch(etag):
        digest = hashlib.sha256()
    elif _SHA1.fullmatch(etag):
        digest = hashlib.sha1(b"blob %d\0" % blob.stat().st_size)
    else:
        raise DiffuseqError(f"cannot verify {file}: the server gave it the unrecognised etag '{etag}'")
    with open(blob, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest() == etag


def _discard(name: str, link: Path) -> None:
    """Remove a bad file (link and blob) from the cache so that no reader, ours or another tool's, gets it again."""
    try:
        for p in (link.resolve(), link):
            if p.is_symlink() or p.is_file():
                os.remove(p)
    except OSError as e:  # a read-only shared cache, say
        raise DiffuseqError(f"cached file {name} is corrupt and cannot be removed: {e}") from e


def _refetch(repo: str, commit: str, filename: str) -> None:
    from huggingface_hub import hf_hub_download

    try:
        hf_hub_download(repo, filename, revision=commit, force_download=True)
    except OSError as e:  # HfHubHTTPError, LocalEntryNotFoundError and disk errors are all OSErrors
        raise DiffuseqError(f"cached file {filename} of {repo} was corrupt and downloading it again failed: {e}") from e


def _offline() -> bool:
    from huggingface_hub import constants

    is_offline_mode = getattr(constants, "is_offline_mode", None)  # a function since 1.x, a constant before
    return is_offline_mode() if is_offline_mode else bool(constants.HF_HUB_OFFLINE)
