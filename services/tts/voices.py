"""Voices and language tags: what engines offer and how a request's language picks one.

Engines spell languages differently (espeak-ng "en-us", "ko"; Google "ko-KR";
piper "en_US"). Everything is normalised to BCP-47 casing ("en-US"), and a
request's language matches a voice when one tag is a subtag prefix of the
other: "en" matches "en-US" and "en-GB", "ko-KR" matches espeak-ng's "ko",
but "en-US" never matches "en-GB".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class Gender(IntEnum):
    """Mirrors soriflow.v1.VoiceGender (kept here so engines need not import protos)."""

    UNSPECIFIED = 0
    MALE = 1
    FEMALE = 2
    NEUTRAL = 3


@dataclass(frozen=True)
class VoiceInfo:
    """One voice of one engine, as ListVoices reports it."""

    name: str
    engine: str
    language_codes: tuple[str, ...]
    natural_sample_rate_hz: int
    gender: Gender = Gender.UNSPECIFIED
    supports_ssml: bool = False
    #: Lower is preferred when several voices match a language equally well.
    priority: int = 5
    #: Engine-private data (espeak-ng's voice file, ...).
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


def normalize_language(tag: str) -> str:
    """BCP-47 casing of a language tag: "EN_us" -> "en-US", "cmn-latn-pinyin" -> "cmn-Latn-pinyin"."""
    parts = [p for p in tag.strip().replace("_", "-").split("-") if p]
    if not parts:
        return ""
    out = [parts[0].lower()]
    private = False
    for part in parts[1:]:
        if part.lower() == "x":
            private = True
        if private:
            out.append(part.lower())
        elif len(part) == 2 and part.isalpha():
            out.append(part.upper())
        elif len(part) == 4 and part.isalpha():
            out.append(part.title())
        else:
            out.append(part.lower())
    return "-".join(out)


def primary_language(tag: str) -> str:
    """The language subtag alone: "ko-KR" -> "ko"."""
    return normalize_language(tag).split("-", 1)[0]


def match_score(requested: str, voice_tag: str) -> int:
    """How well a voice's language serves a request: 3 exact, 2 voice more specific,
    1 voice less specific ("ko-KR" asked, "ko" offered), 0 no match."""
    want = normalize_language(requested).lower().split("-")
    have = normalize_language(voice_tag).lower().split("-")
    if want == have:
        return 3
    if have[: len(want)] == want:
        return 2
    if want[: len(have)] == have:
        return 1
    return 0


def voice_score(requested: str, voice: VoiceInfo) -> int:
    """The best match_score over the voice's languages."""
    return max((match_score(requested, tag) for tag in voice.language_codes), default=0)


def voices_for_language(voices: list[VoiceInfo], language: str) -> list[VoiceInfo]:
    """Voices speaking `language` (all when it is empty), best match first, then by priority."""
    if not language.strip():
        return list(voices)
    scored = [(voice_score(language, v), v) for v in voices]
    matching = [(s, v) for s, v in scored if s > 0]
    matching.sort(key=lambda sv: (-sv[0], sv[1].priority))
    return [v for _, v in matching]
