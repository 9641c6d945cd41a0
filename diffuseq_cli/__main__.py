"""``python -m diffuseq_cli``: the same entry point as the ``diffuseq`` command (used by torchrun)."""

from .cli import main

if __name__ == "__main__":
    main()
