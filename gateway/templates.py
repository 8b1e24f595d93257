"""`{name}` templates in pipeline definitions: parameter defaults and stage arguments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from soriflow.errors import InvalidArgument


def render(template: str, values: Mapping[str, str], *, strict: bool = True) -> str:
    """Fills `{name}` fields; with strict=False an unresolvable template renders as ''."""
    try:
        return template.format_map(dict(values))
    except (KeyError, IndexError, ValueError) as exc:
        if strict:
            raise InvalidArgument(
                f"template {template!r} refers to {exc} which this job does not have"
            ) from None
        return ""


def render_value(value: Any, values: Mapping[str, str]) -> Any:
    """Renders templates inside strings, lists and dicts of a stage's `with:`."""
    if isinstance(value, str):
        return render(value, values) if "{" in value else value
    if isinstance(value, list):
        return [render_value(v, values) for v in value]
    if isinstance(value, dict):
        return {k: render_value(v, values) for k, v in value.items()}
    return value
