"""Per-language pronunciation lexicons: respellings applied before any engine sees the text.

A lexicon maps a written form to a respelling the engines read right
("문의" -> "무니", because engines read it letter by letter as /mun-ui/ while
people say /muni/). The same lexicon serves every engine: espeak-ng and piper
get the respelling in the text; Google gets SSML `<sub alias="무니">문의</sub>`,
which keeps the written text in the request while fixing what is said.

Matching: one pass, longest entry first, so replacements are never rewritten
again. Every entry must start a word (not follow a letter); entries ending in
Hangul or CJK match with anything after them, because Korean and Japanese attach
particles and endings without a space ("문의하신"), while others must also end
a word ("SQL" does not match inside "SQLite"). Latin entries ignore case.

Built-in lexicons live in `soriflow.tts.lexicons/<lang>.yaml`; the file in
`SORIFLOW_TTS_LEXICON_FILE` (YAML or JSON, `{lang: {word: respelling}}`) is
merged over them, and an empty respelling removes a built-in entry.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from soriflow.tts.ssml import escape_attr, escape_text
from soriflow.tts.voices import primary_language


def _attaching(char: str) -> bool:
    """Whether endings attach to a word ending in `char` without a space (Hangul, kana, CJK)."""
    name = unicodedata.name(char, "")
    return name.startswith(("HANGUL", "CJK", "HIRAGANA", "KATAKANA"))


@dataclass(frozen=True)
class Match:
    start: int
    end: int
    written: str
    respelling: str


class LanguageLexicon:
    """The entries of one language, compiled into one regular expression."""

    def __init__(self, language: str, entries: Mapping[str, str]) -> None:
        self.language = language
        self.entries = {k: v for k, v in entries.items() if k.strip() and v.strip()}
        self._lookup = {k.casefold(): v for k, v in self.entries.items()}
        alternatives = []
        for word in sorted(self.entries, key=len, reverse=True):
            tail = "" if _attaching(word[-1]) else r"(?!\w)"
            alternatives.append(re.escape(word) + tail)
        self._pattern = (
            re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + ")", re.IGNORECASE) if alternatives else None
        )

    def __len__(self) -> int:
        return len(self.entries)

    def matches(self, text: str) -> list[Match]:
        if self._pattern is None:
            return []
        return [
            Match(m.start(), m.end(), m.group(0), self._lookup[m.group(0).casefold()])
            for m in self._pattern.finditer(text)
        ]

    def rewrite(self, text: str) -> str:
        """The text with respellings in place of the written forms."""
        return self._join(text, lambda m: m.respelling, lambda s: s)

    def to_ssml(self, text: str) -> str:
        """Escaped SSML text with `<sub alias="respelling">written</sub>` for each match."""
        return self._join(
            text,
            lambda m: f'<sub alias="{escape_attr(m.respelling)}">{escape_text(m.written)}</sub>',
            escape_text,
        )

    def _join(self, text: str, replace: Callable[[Match], str], keep: Callable[[str], str]) -> str:
        out: list[str] = []
        pos = 0
        for match in self.matches(text):
            out.append(keep(text[pos : match.start]))
            out.append(replace(match))
            pos = match.end
        out.append(keep(text[pos:]))
        return "".join(out)


class Lexicon:
    """Lexicons of all languages, looked up by a request's language ("ko-KR" uses `ko`)."""

    def __init__(self, entries: Mapping[str, Mapping[str, str]]) -> None:
        self._languages = {
            primary_language(lang): LanguageLexicon(primary_language(lang), words)
            for lang, words in entries.items()
        }

    def for_language(self, language: str) -> LanguageLexicon | None:
        lexicon = self._languages.get(primary_language(language))
        return lexicon if lexicon is not None and len(lexicon) else None

    @property
    def languages(self) -> list[str]:
        return sorted(lang for lang, lex in self._languages.items() if len(lex))

    @classmethod
    def load(cls, *, builtin: bool = True, override: Path | None = None) -> Lexicon:
        """The built-in lexicons (if `builtin`) with `override` merged over them."""
        merged: dict[str, dict[str, str]] = {}
        if builtin:
            for item in importlib.resources.files("soriflow.tts.lexicons").iterdir():
                if item.name.endswith((".yaml", ".yml")):
                    data = yaml.safe_load(item.read_text(encoding="utf-8")) or {}
                    merged[primary_language(item.name.rsplit(".", 1)[0])] = _entries(data, item.name)
        if override is not None:
            for lang, words in _read_override(override).items():
                merged.setdefault(primary_language(lang), {}).update(words)
        return cls(merged)


def _entries(data: object, where: str) -> dict[str, str]:
    if not isinstance(data, dict):
        raise ValueError(f"lexicon {where}: expected a mapping of word to respelling")
    out: dict[str, str] = {}
    for key, value in data.items():
        if not isinstance(key, str) or not (value is None or isinstance(value, str)):
            raise ValueError(f"lexicon {where}: entry {key!r}: {value!r} must map text to text")
        out[key] = value or ""
    return out


def _read_override(path: Path) -> dict[str, dict[str, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read lexicon file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(
            f"lexicon file {path} is not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"lexicon file {path}: expected {{language: {{word: respelling}}}}")
    return {str(lang): _entries(words, f"{path} [{lang}]") for lang, words in data.items()}
