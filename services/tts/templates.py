"""Text templates: "문의하신 내용이 {summary} 맞으신가요?" filled in by a pipeline.

Deliberately not `str.format`: a template comes from configuration or a
request, and `{summary.__class__}` or `{0[1]}` must be a plain error, not
attribute access. Only `{name}` placeholders exist; `{{` and `}}` are literal
braces; any other brace is an error, so typos surface instead of being spoken.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from soriflow.errors import InvalidArgument

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_NAME = re.compile(r"^[^\W\d]\w*$")


def placeholders(template: str) -> list[str]:
    """The placeholder names of `template`, in order of first use."""
    names: list[str] = []
    for match in _TOKEN.finditer(template):
        name = match.group(1)
        if name is not None and name.strip() not in names:
            names.append(name.strip())
    return names


def render(template: str, variables: Mapping[str, str]) -> str:
    """`template` with each `{name}` replaced by its value; INVALID_ARGUMENT when one is missing."""
    missing: list[str] = []
    out: list[str] = []
    pos = 0
    for match in _TOKEN.finditer(template):
        out.append(template[pos : match.start()])
        pos = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            out.append(token[0])
            continue
        name = match.group(1)
        if name is None:
            raise InvalidArgument(
                f"template has an unmatched {token!r} at character {match.start() + 1}; "
                "write {{ or }} for a literal brace"
            )
        name = name.strip()
        if not _NAME.match(name):
            raise InvalidArgument(f"template placeholder {{{name}}} is not a name; use {{word}} placeholders")
        if name not in variables:
            if name not in missing:
                missing.append(name)
            continue
        out.append(variables[name])
    out.append(template[pos:])
    if missing:
        given = ", ".join(sorted(variables)) or "none"
        raise InvalidArgument(
            f"template variable(s) {', '.join(missing)} have no value (variables given: {given})"
        )
    return "".join(out)
