"""What MBR chooses from (issue 19): rules over the same candidates, scored side by side.

    diffuseq generate --model M -i src.txt -n 10 --mbr --format jsonl -o cands.jsonl
    python bench/eval_choice.py cands.jsonl refs.txt --model M

Reads ``generate``'s JSONL (every candidate, its MBR scores, the choice) and re-chooses with
each rule, without sampling again; prints one JSON line per rule: BLEU, iBLEU, copies,
repeats, statements turned into questions (as ``diffuseq evaluate`` and ``gpu_run`` count
them), and the share of choices holding a made-up word.

Rules, each on top of the MBR scores (first on ties, as MBR):
- ``mbr``: the best candidate (``--allow-copy``).
- ``avoid-copy``: the best that is not the source (today's default).
- ``words``: ``avoid-copy`` among the candidates with the fewest made-up words: a word is made
  up when it is not in the source and the tokenizer cannot spell it as one whole-word token
  (``goodologist`` is ``▁good olog ist``; ``geologist`` in the source is fine).
- ``mood``: ``avoid-copy`` among the candidates that keep the source's mood (a statement's
  candidates without ``?`` first).
- ``words-shared``: as ``words``, but a word that two of the K candidates share is not made up
  (a garbled word comes from candidates that disagree inside it).
- ``words+mood``, ``words-shared+mood``: both filters, mood first.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffuseq_cli.evaluation.report import evaluate  # noqa: E402
from diffuseq_cli.evaluation.metrics import same_words  # noqa: E402
from diffuseq_cli.modelfiles.tokenizer import load_tokenizer  # noqa: E402

_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")


def words_of(text: str) -> list[str]:
    return _WORD.findall(text)


class MadeUp:
    """Counts a candidate's words that are neither in the source nor one whole-word token."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.cache: dict[str, bool] = {}

    def known(self, word: str) -> bool:
        if word not in self.cache:
            pieces = self.tok.encode([word])[0]
            self.cache[word] = len(pieces) == 1
        return self.cache[word]

    def count(self, candidate: str, source: str, others: list[str] | None = None) -> int:
        """Made-up words of ``candidate``; with ``others`` (all K candidates), a word two of them share is not made up."""
        seen = {w.lower() for w in words_of(source)}
        if others is not None:
            support: dict[str, int] = {}
            for c in others:
                for w in {w.lower() for w in words_of(c)}:
                    support[w] = support.get(w, 0) + 1
            seen |= {w for w, k in support.items() if k >= 2}
        return sum(1 for w in words_of(candidate) if w.lower() not in seen and not self.known(w))


def choose(rec: dict, rule: str, made_up: MadeUp) -> str:
    cands, scores, src = rec["candidates"], rec["mbr_scores"], rec["src"]
    order = sorted(range(len(cands)), key=lambda i: (-scores[i], i))
    pool = order
    if rule != "mbr":
        pool = [i for i in pool if not same_words(cands[i], src)] or pool
    if "mood" in rule and "?" not in src:
        pool = [i for i in pool if "?" not in cands[i]] or pool
    if "words" in rule:
        others = cands if "shared" in rule else None
        counts = {i: made_up.count(cands[i], src, others) for i in pool}
        fewest = min(counts.values())
        pool = [i for i in pool if counts[i] == fewest]
    return cands[pool[0]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("candidates", type=Path, help="generate --format jsonl output with -n K --mbr")
    ap.add_argument("refs", type=Path)
    ap.add_argument("--model", required=True, help="the model folder (its tokenizer spells words)")
    ap.add_argument("--rules", default="mbr,avoid-copy,words,words-shared,mood,words+mood,words-shared+mood")
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    recs = [json.loads(x) for x in args.candidates.read_text().splitlines() if x.strip()]
    refs = args.refs.read_text().splitlines()[: len(recs)]
    made_up = MadeUp(load_tokenizer(Path(args.model) / "tokenizer.json"))
    srcs = [r["src"] for r in recs]
    for rule in args.rules.split(","):
        chosen = [choose(r, rule, made_up) for r in recs]
        row = evaluate([chosen], refs, sources=srcs).files[0].to_dict()
        stated = [c for c, s in zip(chosen, srcs) if "?" not in s]
        print(json.dumps({"label": args.label, "rule": rule, "lines": len(chosen),
                          **{k: round(v, 4) for k, v in row.items() if isinstance(v, float)},
                          "questions": round(sum("?" in c for c in stated) / max(1, len(stated)), 4),
                          "made_up": round(sum(made_up.count(c, s) > 0 for c, s in zip(chosen, srcs)) / len(chosen), 4)}),
              flush=True)


if __name__ == "__main__":
    main()
