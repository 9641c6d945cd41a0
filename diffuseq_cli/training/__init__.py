"""Training a model: ``diffuseq train``'s library side.

* ``config``: training settings (``TrainConfig``), the ``fast`` and ``paper`` recipes, resume rules;
* ``run``: a training run: checks, tokenizer, data cache, worker processes;
* ``trainer``: one process's optimisation loop: batches, loss, update, EMA;
* ``data``: JSONL pairs, flat token arrays, length-aware batches, collation;
* ``probe``: the BLEU probe of ``train --eval-every``;
* ``distributed``: process groups (spawned, or torchrun's).

``config`` imports no torch: ``train --help`` reads its defaults.
"""
