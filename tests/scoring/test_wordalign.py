"""Edit-distance alignment of reference and recognised words: the per-word statuses."""

from __future__ import annotations

from soriflow.scoring.wordalign import Op, align_words, substitution_cost

REF = ["i", "bought", "a", "new", "toy", "at", "the", "store"]


def ops(ref: list[str], hyp: list[str]) -> list[tuple[str, int | None, int | None]]:
    return [(p.op.value, p.ref, p.hyp) for p in align_words(ref, hyp)]


def test_identical_is_all_correct() -> None:
    assert {p.op for p in align_words(REF, REF)} == {Op.MATCH}


def test_omission_insertion_substitution() -> None:
    hyp = ["i", "bought", "um", "a", "new", "boat", "at", "store"]
    result = ops(REF, hyp)
    assert ("insertion", None, 2) in result
    assert ("substitution", 4, 5) in result
    assert ("omission", 6, None) in result  # "the"
    assert sum(1 for op, _, _ in result if op == "match") == 6
    # every reference word appears exactly once, in order
    assert [r for _, r, _ in result if r is not None] == list(range(len(REF)))
    assert [h for _, _, h in result if h is not None] == list(range(len(hyp)))


def test_similar_words_pair_up() -> None:
    # "stair" is paired with "store" (similar spelling), not with the unrelated neighbour
    result = ops(["the", "store", "today"], ["stair", "today"])
    assert result == [("omission", 0, None), ("substitution", 1, 0), ("match", 2, 1)]
    assert substitution_cost("store", "stair") < substitution_cost("store", "banana") <= 1.0


def test_empty_sides() -> None:
    assert ops([], []) == []
    assert ops(["a", "b"], []) == [("omission", 0, None), ("omission", 1, None)]
    assert ops([], ["x"]) == [("insertion", None, 0)]


def test_completely_different_sentence_has_no_matches() -> None:
    result = align_words(REF, ["the", "weather", "is", "very", "nice", "today"])
    assert sum(1 for p in result if p.op is Op.MATCH) <= 1
