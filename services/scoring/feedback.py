"""Feedback sentences naming the learner's top issues, in English or Korean.

The scorer collects `Issue`s with a severity (roughly: how much fixing it
would help); the three most severe are rendered with the templates of the
request's feedback language. Phones are named with an example word ("the
'oy' sound, as in 'boy'"), because ARPAbet symbols mean nothing to learners.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from soriflow.errors import InvalidArgument

SUPPORTED = ("en", "ko")
MAX_ITEMS = 3

_PHONE_EXAMPLES = {
    "AA": ("ah", "father"),
    "AE": ("a", "cat"),
    "AH": ("uh", "but"),
    "AO": ("aw", "law"),
    "AW": ("ow", "cow"),
    "AY": ("eye", "my"),
    "B": ("b", "bee"),
    "CH": ("ch", "chair"),
    "D": ("d", "day"),
    "DH": ("th", "this"),
    "EH": ("e", "bed"),
    "ER": ("er", "bird"),
    "EY": ("ay", "say"),
    "F": ("f", "fish"),
    "G": ("g", "go"),
    "HH": ("h", "hat"),
    "IH": ("i", "sit"),
    "IY": ("ee", "see"),
    "JH": ("j", "jam"),
    "K": ("k", "key"),
    "L": ("l", "leg"),
    "M": ("m", "man"),
    "N": ("n", "no"),
    "NG": ("ng", "sing"),
    "OW": ("oh", "go"),
    "OY": ("oy", "boy"),
    "P": ("p", "pen"),
    "R": ("r", "red"),
    "S": ("s", "see"),
    "SH": ("sh", "she"),
    "T": ("t", "tea"),
    "TH": ("th", "think"),
    "UH": ("oo", "book"),
    "UW": ("oo", "food"),
    "V": ("v", "van"),
    "W": ("w", "we"),
    "Y": ("y", "yes"),
    "Z": ("z", "zoo"),
    "ZH": ("zh", "measure"),
}

_TEMPLATES: dict[str, dict[str, str]] = {
    "en": {
        "no_speech": "We could not hear any speech: check your microphone and read the sentence aloud.",
        "omission": "You skipped {words}.",
        "substitution": "You said '{other}' instead of '{word}'.",
        "mispronunciation": "'{word}' sounded unclear.",
        "mispronunciation_phone": "'{word}' sounded unclear: check the '{sound}' sound, as in '{example}'.",
        "pause": "You paused {value:.1f} s before '{word}'.",
        "slow": "You spoke more slowly than the reference ({value:.1f}x its pace): keep the words flowing.",
        "fast": "You spoke faster than the reference ({value:.1f}x its pace): slow down a little.",
        "monotone": "Your intonation was flat: let your voice rise and fall as in the reference.",
        "insertion": "You added '{word}', which is not in the sentence.",
        "unvoiced": (
            "We could not hear the pitch of your voice (were you whispering?): read the sentence aloud."
        ),
        "clipped": (
            "Your recording is distorted because it is too loud: hold the microphone a little further away."
        ),
        "praise": "Well done: your reading was clear and close to the reference.",
    },
    "ko": {
        "no_speech": "말소리가 들리지 않았어요. 마이크를 확인하고 문장을 소리 내어 읽어 주세요.",
        "omission": "{words} 단어를 빠뜨렸어요.",
        "substitution": "'{word}' 자리에서 다른 단어('{other}')가 들렸어요.",
        "mispronunciation": "'{word}' 발음이 불분명했어요.",
        "mispronunciation_phone": (
            "'{word}' 발음이 불분명했어요. '{example}'의 '{sound}' 소리를 연습해 보세요."
        ),
        "pause": "'{word}' 앞에서 {value:.1f}초 쉬었어요.",
        "slow": "원어민보다 느리게 말했어요 (속도 {value:.1f}배). 단어를 끊지 말고 이어서 말해 보세요.",
        "fast": "원어민보다 빠르게 말했어요 (속도 {value:.1f}배). 조금 천천히 말해 보세요.",
        "monotone": "억양이 단조로웠어요. 원어민처럼 목소리를 올렸다 내렸다 해 보세요.",
        "insertion": "문장에 없는 '{word}' 단어를 추가했어요.",
        "unvoiced": "목소리의 높낮이가 들리지 않았어요 (속삭였나요?). 소리 내어 읽어 주세요.",
        "clipped": "녹음 소리가 너무 커서 찌그러졌어요. 마이크를 조금 멀리 해 주세요.",
        "praise": "잘했어요! 발음이 또렷하고 원어민과 비슷했어요.",
    },
}


@dataclass(frozen=True)
class Issue:
    """Something to tell the learner; `severity` orders the issues (higher first)."""

    kind: str
    severity: float
    word: str = ""
    other: str = ""
    value: float = 0.0
    words: tuple[str, ...] = ()


def feedback_language(code: str) -> str:
    """ "en"/"ko" from a request code ("" -> en, "ko-KR" -> ko); INVALID_ARGUMENT for others."""
    base = (code or "en").split("-")[0].split("_")[0].lower()
    if base not in SUPPORTED:
        raise InvalidArgument(
            f"feedback_language_code {code!r} is not supported; use one of: {', '.join(SUPPORTED)}"
        )
    return base


def _quote_list(words: Sequence[str], language: str) -> str:
    quoted = [f"'{w}'" for w in words]
    if language == "ko" or len(quoted) == 1:
        return ", ".join(quoted)
    return ", ".join(quoted[:-1]) + " and " + quoted[-1]


def render(issue: Issue, language: str) -> str:
    """One sentence for an issue in the given feedback language."""
    templates = _TEMPLATES[language]
    kind = issue.kind
    params: dict[str, object] = {
        "word": issue.word,
        "other": issue.other,
        "value": issue.value,
        "words": _quote_list(issue.words or (issue.word,), language),
    }
    if kind == "mispronunciation" and issue.other in _PHONE_EXAMPLES:
        sound, example = _PHONE_EXAMPLES[issue.other]
        kind = "mispronunciation_phone"
        params.update(sound=sound, example=example)
    return templates[kind].format(**params)


def compose(issues: Sequence[Issue], language: str, *, limit: int = MAX_ITEMS) -> list[str]:
    """The `limit` most severe issues as sentences; praise when there is nothing to fix."""
    if not issues:
        return [_TEMPLATES[language]["praise"]]
    ranked = sorted(issues, key=lambda i: -i.severity)[:limit]
    return [render(issue, language) for issue in ranked]
