"""Model files: where a model comes from and how it is kept on disk.

* ``folder``: model folders (``config.json``, ``model.safetensors``, ``tokenizer.json``, ``README.md``);
* ``run_folder``: training run folders (numbered checkpoints, ``latest``, resume state);
* ``card``: model cards; ``tokenizer``: BPE training, ``tokenizer.json``, bert ``vocab.txt``;
* ``official``: checkpoints of the official DiffuSeq code;
* ``pt_files``: ``.pt`` files read as tensors only (``weights_only``), refusals as one line;
* ``hub``, ``tasks``: model resolution (paths, run folders, tasks, the Hub).

The embedded models themselves are package data in ``diffuseq_cli/models/``.
"""
