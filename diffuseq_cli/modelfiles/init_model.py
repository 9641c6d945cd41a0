"""The model ``train --init`` starts from: a diffuseq model folder (fine-tuning) or a BERT.

Either one is a folder, found locally or fetched from the Hub (``hub.resolve_init``); its
``config.json`` says which. The start fixes the model's sizes (``fixed``) and vocabulary, and
gives the initial weights of a freshly built model: a model folder all of them (parts it lacks,
a length head or an absorbing state, start fresh); a BERT the tensors the official
``--use_plm_init bert`` copies (``bert.py``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from ..config import ModelConfig
from ..errors import DiffuseqError, UsageError
from . import bert
from .folder import initial_weights, read_config
from .tokenizer import TextTokenizer, load_tokenizer

# A model folder's weights depend on every field but these (what the run may choose anew).
_FOLDER_FREE = ("dropout", "absorbing_state", "length_head")


@dataclass(frozen=True)
class InitModel:
    kind: Literal["diffuseq", "bert"]
    path: Path
    source: str  # local:PATH or hub:REPO@COMMIT
    config: ModelConfig  # the start's own (a BERT's: its sizes with d = hidden, the other fields at their defaults)
    fixed: tuple[str, ...]  # ModelConfig fields the run must take from the start
    bert: bert.BertFolder | None = None

    def tokenizer(self) -> TextTokenizer:
        if self.bert is not None:
            return bert.bert_tokenizer(self.bert)
        return load_tokenizer(self.path / "tokenizer.json")

    def initial_weights(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """``model``'s state dict with the start's weights in place (checked against its shapes)."""
        if self.bert is not None:
            return bert.place_bert(self.bert, model.state_dict())
        return initial_weights(self.path, model)

    def describe(self) -> str:
        """For model cards and logs: what the run started from."""
        what = "a BERT, as the official `--use_plm_init bert`" if self.kind == "bert" else "a diffuseq model"
        return f"`{self.source}` ({what})"


def open_init(path: str | Path, source: str) -> InitModel:
    """Classify and check the folder at ``path``; errors are ``UsageError``s about that folder."""
    path = Path(path)
    try:
        data = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError("not a model folder (no config.json)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"config.json is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError("config.json is not a JSON object")
    if bert.is_hugging_face_config(data):  # read_bert refuses the types that are not BERT
        found = bert.read_bert(path)
        return InitModel("bert", path, source, found.config, bert.FIXED, found)
    try:
        config = read_config(path).model
    except DiffuseqError as exc:
        raise UsageError(f"not a diffuseq model folder or a BERT ({exc})") from None
    fixed = tuple(f.name for f in dataclasses.fields(ModelConfig) if f.name not in _FOLDER_FREE)
    return InitModel("diffuseq", path, source, config, fixed)
