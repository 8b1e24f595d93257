"""Is a summary grounded in its source? Every content word must come from the source.

A summary read back to a caller must not carry a fact the caller did not
say. The check takes the summary's content terms — nouns, numbers, names,
dates and times — and looks each up in the source:

- **Korean**: Kiwi morphemes. Content terms are nouns (NNG, NNP), numerals
  (NR, SN and the unit noun after them), foreign words (SL) and hanja (SH); a
  term is supported when the same morpheme form occurs anywhere in the source
  (보험료를 / 보험료는 / 보험료 all give 보험료). Numbers compare by value, so
  "30만 원" is supported by "삼십만 원".
- **English**: lemmas (lemminflect). Content terms are words that can be a
  noun or are unknown to the dictionary (names, product terms), capitalized
  words, and numbers; function words and words that can only be verbs,
  adjectives or adverbs are not checked (paraphrasing "asked" as "asks" is
  fine, "the repair" for "the bumper" is not). A term is supported when one of
  its lemmas is a lemma of a source word ("payments" / "paid" do not match,
  "payments" / "payment" do). Number words and digits compare by value
  ("twice" / "2").
- **Template words** that a summary style adds by design (Korean 문의, 요청,
  항의, 여부, 방법 ...; English customer, agent, company ...) are always
  allowed; they name the intent, not a fact.

Languages other than Korean and English fall back to exact word matching on
`\\w+` runs. The result lists the unsupported terms in the summary's order;
the summary is grounded when there are none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import nlp

#: Words the Korean inquiry style adds: the intent and the shape of the question.
KO_TEMPLATE_WORDS = frozenset(
    {
        "문의",
        "요청",
        "항의",
        "여부",
        "방법",
        "시기",
        "금액",
        "사유",
        "가능",
        "내용",
        "관련",
        "및",
        "시",
        "고객",
        "현황",
    }
)
#: Words the English inquiry style adds (compared as lemmas).
EN_TEMPLATE_WORDS = frozenset(
    {
        "customer",
        "caller",
        "agent",
        "company",
        "ask",
        "request",
        "complain",
        "complaint",
        "inquiry",
        "question",
        "whether",
        "summary",
    }
)
#: Korean tags whose morphemes are content terms.
KO_CONTENT_TAGS = frozenset({"NNG", "NNP", "NR", "SN", "SL", "SH"})
#: Units after a number ("3 주", "30만 원"): checked together with the number.
KO_NUMBER_TAGS = frozenset({"NR", "SN"})

#: English function words, pronouns, auxiliaries and fillers: never content.
EN_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "then",
        "than",
        "so",
        "because",
        "as",
        "of",
        "to",
        "in",
        "on",
        "at",
        "for",
        "with",
        "by",
        "from",
        "into",
        "onto",
        "about",
        "over",
        "under",
        "after",
        "before",
        "during",
        "between",
        "through",
        "up",
        "down",
        "out",
        "off",
        "again",
        "further",
        "once",
        "here",
        "there",
        "when",
        "where",
        "why",
        "how",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "this",
        "that",
        "these",
        "those",
        "i",
        "me",
        "my",
        "mine",
        "myself",
        "we",
        "us",
        "our",
        "ours",
        "ourselves",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "he",
        "him",
        "his",
        "himself",
        "she",
        "her",
        "hers",
        "herself",
        "it",
        "its",
        "itself",
        "they",
        "them",
        "their",
        "theirs",
        "themselves",
        "am",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "have",
        "has",
        "had",
        "having",
        "do",
        "does",
        "did",
        "doing",
        "will",
        "would",
        "shall",
        "should",
        "can",
        "could",
        "may",
        "might",
        "must",
        "not",
        "no",
        "nor",
        "only",
        "own",
        "same",
        "too",
        "very",
        "just",
        "also",
        "any",
        "all",
        "both",
        "each",
        "few",
        "more",
        "most",
        "other",
        "some",
        "such",
        "s",
        "t",
        "don't",
        "doesn't",
        "didn't",
        "isn't",
        "aren't",
        "wasn't",
        "weren't",
        "won't",
        "wouldn't",
        "can't",
        "couldn't",
        "shouldn't",
        "haven't",
        "hasn't",
        "hadn't",
        "i'm",
        "i've",
        "i'd",
        "i'll",
        "you're",
        "you've",
        "you'd",
        "you'll",
        "he's",
        "she's",
        "it's",
        "we're",
        "we've",
        "they're",
        "they've",
        "that's",
        "there's",
        "what's",
        "let's",
        "yes",
        "yeah",
        "ok",
        "okay",
        "oh",
        "um",
        "uh",
        "hmm",
        "hi",
        "hello",
        "hey",
        "please",
        "thanks",
        "thank",
        "well",
        "right",
        "sure",
        "like",
        "really",
        "actually",
        "basically",
        "anyway",
        "maybe",
        "still",
        "even",
        "something",
        "anything",
        "everything",
        "nothing",
        "someone",
        "anyone",
        "everyone",
        "nobody",
        "one",
        "ones",
        "thing",
        "things",
        "way",
        "lot",
        "bit",
        "kind",
        "sort",
        "get",
        "got",
        "getting",
        "make",
        "made",
        "want",
        "wanted",
        "need",
        "needed",
        "know",
        "knew",
        "tell",
        "told",
        "say",
        "said",
        "going",
        "go",
        "went",
        "gone",
        "come",
        "came",
        "take",
        "took",
        "give",
        "gave",
        "let",
    ]
)


@dataclass(frozen=True)
class Grounding:
    """Whether every content term of a summary is supported by its source, and which are not."""

    grounded: bool
    unsupported: list[str] = field(default_factory=list)
    #: Content terms checked (supported or not).
    checked: int = 0


# --- Korean ----------------------------------------------------------------------------------


def _ko_terms(text: str, morphs: list[nlp.Morph] | None = None) -> list[tuple[str, float | None]]:
    """(term, numeric value or None) of Korean text: nouns, names, foreign words, numbers with units.

    `morphs` (a slice of the whole text's analysis) avoids analysing a word again out of context.
    """
    morphs = nlp.morphemes(text) if morphs is None else morphs
    terms: list[tuple[str, float | None]] = []
    i = 0
    while i < len(morphs):
        morph = morphs[i]
        if morph.tag in KO_NUMBER_TAGS:
            j = i
            while (
                j + 1 < len(morphs)
                and morphs[j + 1].tag in KO_NUMBER_TAGS
                and morphs[j + 1].start == morphs[j].end
            ):
                j += 1
            surface = text[morph.start : morphs[j].end]
            terms.append((surface, nlp.korean_number(surface)))
            i = j + 1
            continue
        if morph.tag in KO_CONTENT_TAGS:
            terms.append((morph.form, None))
        i += 1
    return terms


def _ko_source(text: str) -> tuple[set[str], set[float]]:
    forms: set[str] = set()
    values: set[float] = set()
    morphs = nlp.morphemes(text)
    for morph in morphs:
        forms.add(morph.form.lower())
    for word in nlp.korean_words(text, morphs):
        part = nlp.noun_part(word, text)
        if part:  # the caller's compound as written (자차, 대물), however Kiwi split it
            forms.add(part.lower())
    for term, value in _ko_terms(text):
        forms.add(term.lower())
        if value is not None:
            values.add(value)
    # Native numerals before a counter ("두 번") are determiners (MM) to Kiwi.
    for word in re.findall(r"\S+", text):
        value = nlp.korean_number(re.sub(r"[^\w]", "", word))
        if value is not None:
            values.add(value)
    return forms, values


def _check_korean(summary: str, source: str, allowed: frozenset[str]) -> Grounding:
    forms, values = _ko_source(source)
    unsupported: list[str] = []
    checked = 0
    morphs = nlp.morphemes(summary)
    for word in nlp.korean_words(summary, morphs):
        part = nlp.noun_part(word, summary)
        terms = _ko_terms(summary, word)
        checked += len(terms)
        surface = summary[word[0].start : word[-1].end].strip(".,!?")
        if surface in allowed or (part and (part.lower() in forms or part in allowed)):
            continue  # a template word, or the caller's word as written (however Kiwi split it)
        for term, value in terms:
            if term in allowed or term.lower() in forms:
                continue
            if value is not None and value in values:
                continue
            unsupported.append(term)
    return Grounding(not unsupported, _unique(unsupported), checked)


# --- English ---------------------------------------------------------------------------------


def is_english_content(word: str, *, first: bool = False) -> bool:
    """Whether an English word is a content term: a number, a name, or a possible noun."""
    lower = word.lower()
    if lower in EN_STOPWORDS:
        return False
    if any(c.isdigit() for c in word) or nlp.english_number(word) is not None:
        return True
    if len(word) < 2:
        return False
    if word[0].isupper() and not first and lower != "i":
        return True
    pos = nlp.english_pos(word)
    return not pos or "NOUN" in pos or "PROPN" in pos


def _en_terms(text: str) -> list[str]:
    terms: list[str] = []
    for sentence in re.split(r"(?<=[.!?])\s+|\n", text):
        for index, word in enumerate(nlp.english_words(sentence)):
            if is_english_content(word, first=index == 0):
                terms.append(word)
    return terms


def _check_english(summary: str, source: str, allowed: frozenset[str]) -> Grounding:
    lemmas: set[str] = set()
    values: set[float] = set()
    for word in nlp.english_words(source):
        lemmas.update(nlp.english_lemmas(word))
        value = nlp.english_number(word)
        if value is not None:
            values.add(value)
    unsupported: list[str] = []
    terms = _en_terms(summary)
    for term in terms:
        candidates = nlp.english_lemmas(term)
        if candidates & lemmas or candidates & allowed:
            continue
        value = nlp.english_number(term)
        if value is not None and value in values:
            continue
        unsupported.append(term)
    return Grounding(not unsupported, _unique(unsupported), len(terms))


# --- any language ----------------------------------------------------------------------------

_WORD = re.compile(r"\w+", re.UNICODE)


def _check_words(summary: str, source: str) -> Grounding:
    source_words = {w.lower() for w in _WORD.findall(source)}
    terms = [w for w in _WORD.findall(summary) if len(w) > 1 or w.isdigit()]
    unsupported = [w for w in terms if w.lower() not in source_words]
    return Grounding(not unsupported, _unique(unsupported), len(terms))


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def check_grounding(summary: str, source: str, language: str) -> Grounding:
    """Checks `summary` against `source` in `language` (ISO 639-1); see the module docstring."""
    if not summary.strip():
        return Grounding(True, [], 0)
    if language == "ko":
        return _check_korean(summary, source, KO_TEMPLATE_WORDS)
    if language == "en":
        return _check_english(summary, source, EN_TEMPLATE_WORDS)
    return _check_words(summary, source)


def source_text(text: str, transcript: bool) -> str:
    """The text a summary is checked against: a transcript's turns without their speaker labels."""
    if not transcript:
        return text
    return "\n".join(re.sub(r"^[^:\n]{1,40}:\s+", "", line) for line in text.splitlines())
