"""diffuseq: DiffuSeq sequence-to-sequence text diffusion (Gong et al., ICLR 2023) as a tool.

The public library API is loaded lazily so that ``import diffuseq_cli`` (and the
CLI's ``--help``) never pays for importing torch.
"""

from ._version import __version__

__all__ = ["DiffuSeq", "__version__"]


def __getattr__(name):
    if name == "DiffuSeq":
        from .api import DiffuSeq

        return DiffuSeq
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
