"""The one template language of Soriflow: `{name}` fields with a few string filters.

Pipelines (parameter defaults such as a reference recording's location, stage
arguments, key patterns) and the TTS service's `TextTemplate` all use it, so
a template means the same wherever it is written:

    s3://standard-audio-file/{content_type}/level_{level}/{title|replace('_', ' ')}/audio_line_{line}.wav
    문의하신 내용이 {summary_phrase} 맞으신가요?

- `{name}` is replaced by the variable's value (a name is letters, digits and `_`, with `-`
  inside as stage names have it: `{picture-prompt}`); `{{` and `}}` are literal braces; any other
  brace is an error, so typos surface instead of reaching a key or a voice.
- `{name|filter|filter(...)}` passes the value through filters, left to right:
  `lower`, `upper`, `title` (each whitespace-separated word capitalised, the rest lower case),
  `replace('old', 'new')`, `urldecode` (percent-escapes decoded as UTF-8; `+` stays `+`) and
  `urlencode` (percent-encodes all but letters, digits, `-._~` and `/`).
- Filter arguments are string literals in single or double quotes (`\\` escapes the quote and
  itself). Nothing else exists: no attribute or index access, no expressions, no loops.

Deliberately not `str.format` (`{x.__class__}` and `{0[1]}` reach into objects) nor Jinja2,
even sandboxed: Jinja's sandbox blocks unsafe attributes but keeps loops and arithmetic, and
the TTS service renders templates its callers send, where one nested loop is a denial of
service; every filter here costs time linear in its input, and a rendered value is capped at
`MAX_RENDERED_CHARS`. Jinja's `{{ }}` syntax would also change every pipeline written so far,
and key patterns read the same `{field}` syntax backwards (capturing fields from a key), which
no template engine does.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from soriflow.errors import InvalidArgument

#: A rendered value longer than this is refused (a chain of replaces could otherwise grow without end).
MAX_RENDERED_CHARS = 1_000_000

_STRING = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
_TOKEN = re.compile(r"\{\{|\}\}|\{((?:[^{}'\"]|" + _STRING + r")*)\}|[{}]", re.DOTALL)
#: Letters, digits and `_`, with `-` inside as stage names use it (`{picture-prompt}`).
_NAME = re.compile(r"[^\W\d](?:[\w-]*\w)?")
_FILTER = re.compile(r"\s*\|\s*([^\W\d]\w*)\s*(\(((?:[^()'\"]|" + _STRING + r")*)\))?\s*", re.DOTALL)
_ARGUMENT = re.compile(r"\s*(" + _STRING + r")\s*(,|$)", re.DOTALL)


def _title(value: str) -> str:
    return re.sub(r"\S+", lambda m: m.group(0)[:1].upper() + m.group(0)[1:].lower(), value)


def _replace(value: str, old: str, new: str) -> str:
    return value.replace(old, new)


@dataclass(frozen=True)
class _FilterSpec:
    function: Callable[..., str]
    arguments: int
    usage: str


FILTERS: dict[str, _FilterSpec] = {
    "lower": _FilterSpec(str.lower, 0, "lower"),
    "upper": _FilterSpec(str.upper, 0, "upper"),
    "title": _FilterSpec(_title, 0, "title"),
    "replace": _FilterSpec(_replace, 2, "replace('old', 'new')"),
    "urldecode": _FilterSpec(lambda v: urllib.parse.unquote(v, errors="strict"), 0, "urldecode"),
    "urlencode": _FilterSpec(lambda v: urllib.parse.quote(v, safe="/"), 0, "urlencode"),
}


@dataclass(frozen=True)
class Filter:
    name: str
    arguments: tuple[str, ...] = ()

    def apply(self, value: str) -> str:
        return FILTERS[self.name].function(value, *self.arguments)


@dataclass(frozen=True)
class Field:
    """One `{name|filter...}` of a template."""

    name: str
    filters: tuple[Filter, ...] = ()

    def render(self, value: str) -> str:
        for step in self.filters:
            try:
                value = step.apply(value)
            except UnicodeDecodeError:
                raise InvalidArgument(
                    f"template field {{{self.name}|...}}: the value's percent-escapes are not UTF-8 "
                    "(urldecode)"
                ) from None
            if len(value) > MAX_RENDERED_CHARS:
                raise InvalidArgument(
                    f"template field {{{self.name}|...}} renders over {MAX_RENDERED_CHARS} characters"
                )
        return value


#: A parsed template: literal text and fields, in order.
Parts = tuple[str | Field, ...]


def _unquote(literal: str) -> str:
    return re.sub(r"\\(.)", r"\1", literal[1:-1], flags=re.DOTALL)


def _arguments(text: str, field: str) -> tuple[str, ...]:
    if not text.strip():
        return ()
    found: list[str] = []
    position = 0
    while position < len(text):
        match = _ARGUMENT.match(text, position)
        if match is None or match.end() == position:
            raise InvalidArgument(
                f"template field {{{field}}}: filter arguments are quoted strings separated by commas"
            )
        found.append(_unquote(match.group(1)))
        position = match.end()
    return tuple(found)


def _field(body: str) -> Field:
    name_match = _NAME.match(body.strip())
    stripped = body.strip()
    if name_match is None:
        raise InvalidArgument(f"template placeholder {{{stripped}}} is not a name; use {{word}} placeholders")
    rest = stripped[name_match.end() :]
    filters: list[Filter] = []
    position = 0
    while position < len(rest):
        match = _FILTER.match(rest, position)
        if match is None or match.end() == position:
            raise InvalidArgument(
                f"template placeholder {{{stripped}}} is not a name; use {{word}} placeholders, "
                "optionally with filters: {word|lower|replace('_', ' ')}"
            )
        name = match.group(1)
        spec = FILTERS.get(name)
        if spec is None:
            raise InvalidArgument(
                f"template field {{{stripped}}}: unknown filter {name!r}; filters are "
                f"{', '.join(s.usage for s in FILTERS.values())}"
            )
        arguments = _arguments(match.group(3) or "", stripped)
        if len(arguments) != spec.arguments:
            raise InvalidArgument(
                f"template field {{{stripped}}}: filter {name} takes {spec.arguments} argument(s): "
                f"{spec.usage}"
            )
        if name == "replace" and not arguments[0]:
            raise InvalidArgument(
                f"template field {{{stripped}}}: replace needs a non-empty string to replace"
            )
        filters.append(Filter(name, arguments))
        position = match.end()
    return Field(name_match.group(0), tuple(filters))


def parse(template: str) -> Parts:
    """The template's literal text and fields; INVALID_ARGUMENT names the first problem."""
    parts: list[str | Field] = []
    literal: list[str] = []
    position = 0
    for match in _TOKEN.finditer(template):
        literal.append(template[position : match.start()])
        position = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            literal.append(token[0])
            continue
        body = match.group(1)
        if body is None:
            raise InvalidArgument(
                f"template has an unmatched {token!r} at character {match.start() + 1}; "
                "write {{ or }} for a literal brace"
            )
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(_field(body))
    literal.append(template[position:])
    if "".join(literal):
        parts.append("".join(literal))
    return tuple(parts)


def fields(template: str) -> list[Field]:
    """The fields of `template`, in order."""
    return [p for p in parse(template) if isinstance(p, Field)]


def placeholders(template: str) -> list[str]:
    """The variable names of `template`, in order of first use."""
    names: list[str] = []
    for part in fields(template):
        if part.name not in names:
            names.append(part.name)
    return names


def render(template: str, variables: Mapping[str, str], *, strict: bool = True) -> str:
    """`template` with each field replaced by its (filtered) value.

    A variable without a value is INVALID_ARGUMENT naming all of them; with `strict=False` the
    whole template then renders as '' instead (a default that does not apply to this job).
    """
    parts = parse(template)
    missing = [p.name for p in parts if isinstance(p, Field) and p.name not in variables]
    if missing:
        if not strict:
            return ""
        given = ", ".join(sorted(variables)) or "none"
        names = ", ".join(dict.fromkeys(missing))
        raise InvalidArgument(f"template variable(s) {names} have no value (variables given: {given})")
    out = [p if isinstance(p, str) else p.render(str(variables[p.name])) for p in parts]
    return "".join(out)


def capture_pattern(template: str) -> re.Pattern[str]:
    """A regular expression capturing each `{field}` of a key pattern (one path segment or less).

    Filters make no sense when reading a key (they cannot be undone), so a pattern with one is
    INVALID_ARGUMENT, as is a field used twice.
    """
    pattern = ""
    seen: set[str] = set()
    for part in parse(template):
        if isinstance(part, str):
            pattern += re.escape(part)
            continue
        if part.filters:
            raise InvalidArgument(
                f"key pattern field {{{part.name}|...}}: a key pattern captures text and cannot filter it; "
                "apply filters where the field is used"
            )
        if part.name in seen:
            raise InvalidArgument(f"key pattern names {{{part.name}}} twice")
        if not part.name.isidentifier():
            raise InvalidArgument(
                f"key pattern field {{{part.name}}}: a captured field is a word (letters, digits, _)"
            )
        seen.add(part.name)
        pattern += f"(?P<{part.name}>[^/]+?)"
    return re.compile(f"^{pattern}$")


def check(templates: Sequence[str]) -> None:
    """Parses each template (INVALID_ARGUMENT for the first that is not one): at load, not at use."""
    for template in templates:
        parse(template)
