"""Task names (`--task paraphrase`) mapped to the model that serves them.

A table rather than branches in the CLI so that adding a task is one line, and so that a task
without a published model can still be named and answer with how to get one. A task's `spec`
is anything `hub.resolve_model` accepts: a local folder, a `.pt` file or `ORG/NAME[@REVISION]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DiffuseqError, UsageError

# Shipped inside the package (package data), so `--task paraphrase` works offline from install.
EMBEDDED_MODELS = Path(__file__).resolve().parents[1] / "models"

DEFAULT_TASK = "paraphrase"

HOW_TO_GET_A_MODEL = (
    "train one with `diffuseq train data.jsonl` and pass `--model runs/NAME/latest`, "
    "or convert an official DiffuSeq checkpoint with `diffuseq convert ema_0.9999_XXXXXX.pt -o DIR` "
    "and pass `--model DIR`"
)


@dataclass(frozen=True)
class TaskEntry:
    """One task: what it does (for help text) and where its model comes from (`None`: no model yet)."""

    name: str
    summary: str
    spec: str | None = None
    embedded: bool = False  # spec is a folder shipped in the package, which may be missing from a build


TASKS: dict[str, TaskEntry] = {
    entry.name: entry
    for entry in (
        TaskEntry("paraphrase", "rewrite a sentence with the same meaning (QQP)",
                  str(EMBEDDED_MODELS / "paraphrase"), embedded=True),
        TaskEntry("simplification", "rewrite a sentence in simpler words (Wiki-auto)"),
        TaskEntry("question-generation", "write the question a passage answers (Quasar-T)"),
        TaskEntry("dialogue", "reply to a conversational turn (Commonsense Conversation)"),
        TaskEntry("translation", "translate a sentence (IWSLT14 de-en)"),
    )
}


def resolve_task(name: str) -> str:
    """Return the model spec for task `name`, or raise with a message that says what to do instead."""
    key = name.strip().lower().replace("_", "-")
    entry = TASKS.get(key)
    if entry is None:
        raise UsageError(f"unknown task '{name}'; known tasks: {', '.join(sorted(TASKS))}")
    if entry.spec is None:
        raise UsageError(f"task '{key}' has no published model yet; {HOW_TO_GET_A_MODEL}")
    if entry.embedded and not (Path(entry.spec) / "config.json").is_file():
        raise DiffuseqError(
            f"the model for task '{key}' is not included in this installation ({entry.spec} is missing); "
            f"{HOW_TO_GET_A_MODEL}"
        )
    return entry.spec
