"""Which of the MBR-ranked candidates to output: the preferences a paraphraser needs (issue 19).

MBR picks the candidate the others agree with most. For paraphrasing that is often the
source itself, the source with a piece of a word dropped ("goodologist"), or, for a
statement, a question. Each preference narrows the ranked candidates to those it accepts,
in this order, when at least one is accepted (else it leaves them as they are); the first
of what remains, by MBR score, is the choice:

1. ``avoid_copy``: not the source itself (whitespace-normalised).
2. ``keep_mood``: a question stays a question, a statement a statement ("?" or not).
3. ``whole_words``: the fewest made-up words, a word being made up when it is neither in the
   source nor one whole-word token of the model's vocabulary (``is_word``). Rare real words
   split into pieces count too; the preference is relative, among the candidates of one line.

Pure: strings and scores in, an index out; the tokenizer comes in as ``is_word``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .mbr import MBROutput
from .metrics import same_words

_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")


def words_of(text: str) -> list[str]:
    """The alphabetic words of a line (punctuation and numbers left out)."""
    return _WORD.findall(text)


def is_question(text: str) -> bool:
    return "?" in text


def made_up_words(candidate: str, source: str, is_word: Callable[[str], bool]) -> int:
    """Words of ``candidate`` that are not in ``source`` (case-insensitive) and not ``is_word``."""
    seen = {w.lower() for w in words_of(source)}
    return sum(1 for w in words_of(candidate) if w.lower() not in seen and not is_word(w))


@dataclass(frozen=True)
class Preferences:
    """What the output should be, beyond MBR's agreement. ``is_word`` is needed for ``whole_words``."""

    avoid_copy: bool = False
    keep_mood: bool = False
    whole_words: bool = False
    is_word: Callable[[str], bool] | None = None

    def __post_init__(self):
        if self.whole_words and self.is_word is None:
            raise ValueError("whole_words needs is_word (the model's vocabulary)")

    @property
    def any(self) -> bool:
        return self.avoid_copy or self.keep_mood or self.whole_words


def _narrow(pool: list[int], keep: Callable[[int], bool]) -> list[int]:
    return [i for i in pool if keep(i)] or pool


def choose(choice: MBROutput, candidates: Sequence[str], source: str, prefs: Preferences) -> MBROutput:
    """The best-ranked candidate that ``prefs`` accepts (see the module's order); scores unchanged."""
    if not prefs.any:
        return choice
    pool = choice.ranking()
    if prefs.avoid_copy:
        pool = _narrow(pool, lambda i: not same_words(candidates[i], source))
    if prefs.keep_mood:
        mood = is_question(source)
        pool = _narrow(pool, lambda i: is_question(candidates[i]) == mood)
    if prefs.whole_words:
        counts = {i: made_up_words(candidates[i], source, prefs.is_word) for i in pool}
        fewest = min(counts.values())
        pool = [i for i in pool if counts[i] == fewest]
    return MBROutput(pool[0], choice.scores)
