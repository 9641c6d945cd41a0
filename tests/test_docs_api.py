"""docs/api.md promises its examples run: execute its Python blocks in order, in one namespace."""

import re

from paths import ROOT


def test_api_doc_examples_run(capsys):
    """Runs on the embedded model, which git tracks: a checkout without it fails here, not skips."""
    text = (ROOT / "docs" / "api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 5
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), namespace)  # noqa: S102 - our own documentation
    out = capsys.readouterr().out
    assert "torch.Size([2, 16," in out
    assert "model.safetensors" in out
