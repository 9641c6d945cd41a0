"""Scoring and choosing texts, the way the DiffuSeq paper does.

* ``metrics``: the official sentence metrics, to the bit (BLEU, ROUGE-L, dist-1, chrF);
* ``columns``: one object per report column (name, header, per-line score, aggregation, signature part);
* ``report``: ``evaluate``'s report: rows of those columns, self-BLEU, div-4, MBR;
* ``mbr``: minimum Bayes risk selection among a source's candidates;
* ``rerank``: MBR over candidate files that already exist.

Strings in, numbers out: nothing here loads a model.
"""
