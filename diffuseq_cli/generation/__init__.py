"""Sampling texts with a loaded model, in the files that each hold one job:

* ``config``: :class:`SamplingConfig`, every sampling default and check (no torch: the CLI's
  ``--help`` reads it);
* ``jobs``: source lines prepared for sampling (packed ids, region sizes, per-candidate seeds);
* ``batches``: sampling prepared lines in equal-length batches and decoding them, and
  :func:`generate_texts`, the non-streaming entry the API and the training probe use;
* ``stream``: ``generate``'s streaming scheduler (:func:`generate_stream`), input order kept;
* ``lines``: the input and output line formats and ``--resume``'s count of finished lines;
* ``output``: the ``-o`` file, opened with its first finished line, and the record of its options.

Names are re-exported here on first use, so importing the package stays cheap.
"""

from importlib import import_module

_EXPORTS = {
    "SamplingConfig": "config", "SAMPLER_STEPS": "config",
    "Job": "jobs", "prepare": "jobs", "candidate_seed": "jobs", "exact_lengths": "jobs", "target_length": "jobs",
    "model_device": "jobs",
    "generate_texts": "batches", "sample_jobs": "batches", "sample_batch": "batches", "decode_rows": "batches",
    "collapse_repeats": "batches", "source_copied_into_target": "batches",
    "GenerateOptions": "stream", "LineResult": "stream", "generate_stream": "stream",
    "read_sources": "lines", "parse_source": "lines", "format_result": "lines", "lines_done": "lines",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
