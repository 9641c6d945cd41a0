"""The MBR choice's preferences (evaluation/choice.py): each filter, their order, and that a
filter nothing passes leaves the ranking as it was."""

import pytest

from diffuseq_cli.evaluation.choice import Preferences, choose, made_up_words
from diffuseq_cli.evaluation.mbr import MBROutput
from paths import needs_shared

WORDS = {"how", "do", "can", "i", "learn", "python", "be", "a", "good", "the", "is", "it", "stock", "rose"}


def is_word(w: str) -> bool:
    return w.lower() in WORDS


def test_avoid_copy_skips_copies_of_the_source_only_when_something_else_exists():
    cands = ["how do i learn python ?", "how  do i learn python ?", "how can i learn python ?", "python ?"]
    choice = MBROutput(0, [3.0, 3.0, 2.5, 1.0])
    prefs = Preferences(avoid_copy=True)
    assert choose(choice, cands, "how do i learn python ?", prefs).index == 2  # both copies skipped
    assert choose(choice, cands, "something else", prefs).index == 0  # no copy: unchanged
    assert choose(MBROutput(0, [1.0, 0.5]), cands[:2], "how do i learn python ?", prefs).index == 0  # all copies


def test_made_up_words_are_those_neither_in_the_source_nor_whole_in_the_vocabulary():
    src = "How can I be a good geologist?"
    assert made_up_words("How can I be a good geologist?", src, is_word) == 0  # geologist: in the source
    assert made_up_words("How can I be a goodologist?", src, is_word) == 1
    assert made_up_words("How can I be a good geist and ologist?", src, is_word) == 3  # geist, and, ologist
    assert made_up_words("Is it 42 % ?", src, is_word) == 0  # numbers and signs are not words


def test_whole_words_takes_the_best_ranked_of_the_fewest_made_up():
    src = "How can I be a good geologist?"
    cands = ["How can I be a goodologist?", "How can I be a geist?", "How do I be a good geologist?", "How can I be good?"]
    choice = MBROutput(0, [4.0, 3.5, 3.0, 2.0])
    assert choose(choice, cands, src, Preferences(whole_words=True, is_word=is_word)).index == 2
    assert choose(choice, cands, src, Preferences()).index == 0  # no preference: MBR's own choice


def test_keep_mood_keeps_statements_statements_and_questions_questions():
    cands = ["What is the stock ?", "The stock rose .", "Is it ?"]
    choice = MBROutput(0, [3.0, 2.0, 1.0])
    prefs = Preferences(keep_mood=True)
    assert choose(choice, cands, "The stock rose 11 percent .", prefs).index == 1
    assert choose(choice, cands, "Did the stock rise ?", prefs).index == 0
    assert choose(MBROutput(0, [3.0, 1.0]), ["What ?", "Why ?"], "A statement .", prefs).index == 0  # none kept: as ranked


def test_preferences_apply_in_order_copy_then_mood_then_words():
    src = "the stock rose ."
    cands = ["the stock rose .", "is the stock good ?", "the stockx rose .", "the stock rose a good ."]
    choice = MBROutput(0, [4.0, 3.0, 2.0, 1.0])
    prefs = Preferences(avoid_copy=True, keep_mood=True, whole_words=True, is_word=is_word)
    assert choose(choice, cands, src, prefs).index == 3  # not the copy, not the question, no made-up word
    assert choose(choice, cands, src, Preferences(avoid_copy=True)).index == 1


def test_whole_words_needs_the_vocabulary():
    with pytest.raises(ValueError):
        Preferences(whole_words=True)


def test_the_tokenizer_knows_whole_words():
    from diffuseq_cli.modelfiles.tokenizer import load_tokenizer
    from diffuseq_cli.modelfiles.tasks import EMBEDDED_MODELS

    tok = load_tokenizer(EMBEDDED_MODELS / "paraphrase" / "tokenizer.json")
    assert tok.is_word("realize") and tok.is_word("good")
    assert not tok.is_word("goodologist") and not tok.is_word("qualityized")


@needs_shared
def test_generate_stream_applies_the_preferences_to_each_mbr_choice(tmp_path):
    """Through the stream (as ``generate --mbr`` runs): each line's choice is ``choose`` over its MBR
    ranking, with the model's own preferences unless the options say otherwise."""
    import dataclasses

    from diffuseq_cli.evaluation.mbr import mbr_select
    from diffuseq_cli.generation import GenerateOptions, SamplingConfig, generate_stream
    from diffuseq_cli.modelfiles.folder import load_model_folder
    from diffuseq_cli.training.data import read_pairs
    from helpers_models import build_tiny_model
    from paths import QQP_VALID

    loaded = load_model_folder(build_tiny_model(tmp_path / "tiny"))
    own = dataclasses.replace(loaded.config.decoding, whole_words=True, keep_mood=True)
    loaded = dataclasses.replace(loaded, config=dataclasses.replace(loaded.config, decoding=own))
    sources = [s for s, _, _ in read_pairs(QQP_VALID)][:12] + ["The stock rose 11 percent to close at 21.51 dollars."]
    sampling = SamplingConfig(steps=5)
    results = list(generate_stream(loaded, sources, GenerateOptions(num_samples=6, mbr=True, sampling=sampling)))
    plain = list(generate_stream(loaded, sources, GenerateOptions(num_samples=6, mbr=True, sampling=sampling,
                                                                 keep_mood=False, whole_words=False)))
    prefs = Preferences(keep_mood=True, whole_words=True, is_word=loaded.tokenizer.is_word)
    moved = 0
    for r, p in zip(results, plain, strict=True):
        assert r.candidates == p.candidates  # the preferences choose; they do not sample
        assert p.mbr.index == mbr_select(r.candidates).index
        assert r.mbr.index == choose(mbr_select(r.candidates), r.candidates, r.source, prefs).index
        moved += r.mbr.index != p.mbr.index
    assert moved > 0  # a random tiny model makes up words: the preference changes some choices
