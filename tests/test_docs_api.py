"""docs/api.md promises its examples run: execute its Python blocks in order, in one namespace."""

import re

import pytest

from diffuseq_cli.modelfiles.tasks import EMBEDDED_MODELS

from paths import ROOT


@pytest.mark.skipif(not (EMBEDDED_MODELS / "paraphrase" / "config.json").exists(), reason="embedded model not built")
def test_api_doc_examples_run(capsys):
    text = (ROOT / "docs" / "api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 5
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), namespace)  # noqa: S102 - our own documentation
    out = capsys.readouterr().out
    assert "torch.Size([2, 16," in out
    assert "model.safetensors" in out
