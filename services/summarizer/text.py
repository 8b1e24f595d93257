"""Text handling that needs no model: script-based language detection and sentence splitting.

Language detection only looks at scripts, which is enough for routing: the
service needs to know whether the bundled English LM can write the summary
or the input should go to the extractive engine. Hangul, kana, Han,
Cyrillic, Arabic, Thai, Devanagari, Greek and Hebrew map to a language; Latin
script is taken to be English (the caller sets `language_code` for French,
German, ...). Korean text routinely carries Latin words (product names,
"SMS", "OTP"), so Hangul wins once it makes up a fair share of the letters.

Sentences come from the shared splitter (`soriflow.text.sentences`, Korean-aware,
the same one TTS uses); it is re-exported here for the summarizer's modules.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

from soriflow.text.sentences import split_sentences as split_sentences

#: Names used in prompts ("Write the summary in Korean.").
LANGUAGE_NAMES: dict[str, str] = {
    "en": "English",
    "ko": "Korean",
    "ja": "Japanese",
    "zh": "Chinese",
    "ru": "Russian",
    "ar": "Arabic",
    "th": "Thai",
    "hi": "Hindi",
    "el": "Greek",
    "he": "Hebrew",
    "fr": "French",
    "de": "German",
    "es": "Spanish",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "vi": "Vietnamese",
    "id": "Indonesian",
}

_SCRIPT_RANGES: tuple[tuple[int, int, str], ...] = (
    (0xAC00, 0xD7A3, "hangul"),
    (0x1100, 0x11FF, "hangul"),
    (0x3130, 0x318F, "hangul"),
    (0xA960, 0xA97F, "hangul"),
    (0xD7B0, 0xD7FF, "hangul"),
    (0x3040, 0x309F, "kana"),
    (0x30A0, 0x30FF, "kana"),
    (0x4E00, 0x9FFF, "han"),
    (0x3400, 0x4DBF, "han"),
    (0x0400, 0x04FF, "cyrillic"),
    (0x0600, 0x06FF, "arabic"),
    (0x0E00, 0x0E7F, "thai"),
    (0x0900, 0x097F, "devanagari"),
    (0x0370, 0x03FF, "greek"),
    (0x0590, 0x05FF, "hebrew"),
)
_SCRIPT_LANGUAGE = {
    "hangul": "ko",
    "cyrillic": "ru",
    "arabic": "ar",
    "thai": "th",
    "devanagari": "hi",
    "greek": "el",
    "hebrew": "he",
    "latin": "en",
}


def _script(char: str) -> str | None:
    code = ord(char)
    for low, high, name in _SCRIPT_RANGES:
        if low <= code <= high:
            return name
    if char.isalpha() and unicodedata.name(char, "").startswith("LATIN"):
        return "latin"
    return None


def script_counts(text: str) -> Counter[str]:
    """Letters of `text` counted by script."""
    counts: Counter[str] = Counter()
    for char in text:
        if char.isalpha():
            script = _script(char)
            if script is not None:
                counts[script] += 1
    return counts


def detect_language(text: str, default: str = "en") -> str:
    """ISO 639-1 code guessed from the scripts of `text` (`default` when it has no letters).

    Hangul counts double against Latin: one syllable block carries as much as
    two or three Latin letters, and Korean text with a few English terms is Korean.
    """
    counts = script_counts(text)
    if not counts:
        return default
    if counts["kana"]:
        return "ja"
    weighted = Counter(
        {script: n * (2 if script in ("hangul", "han") else 1) for script, n in counts.items()}
    )
    script, _ = weighted.most_common(1)[0]
    if script == "han":
        return "zh"
    return _SCRIPT_LANGUAGE.get(script, default)


def language_name(code: str) -> str:
    return LANGUAGE_NAMES.get(code.lower().split("-")[0], code)


def normalize_language(code: str) -> str:
    """`ko-KR` -> `ko`; empty stays empty."""
    return code.strip().lower().replace("_", "-").split("-")[0]


_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
    """Word tokens (letters/digits runs), lower-cased."""
    return [w.lower() for w in _WORD.findall(text)]


def is_hangul_word(word: str) -> bool:
    return bool(_HANGUL.search(word))
