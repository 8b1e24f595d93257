"""Templates in pipeline definitions: parameter defaults and stage arguments.

One language for every template (`soriflow.text.templates`): `{name}` fields with
filters, e.g. `{title|replace('_', ' ')}`. Stage arguments are rendered with the
job's parameters and metadata (the fields captured from its key included).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from soriflow.text.templates import check as check
from soriflow.text.templates import render as render


def render_value(value: Any, values: Mapping[str, str]) -> Any:
    """Renders templates inside strings, lists and dicts of a stage's `with:`."""
    if isinstance(value, str):
        return render(value, values) if "{" in value or "}" in value else value
    if isinstance(value, list):
        return [render_value(v, values) for v in value]
    if isinstance(value, dict):
        return {k: render_value(v, values) for k, v in value.items()}
    return value


def strings(value: Any) -> Iterator[str]:
    """Every string inside a `with:` value (what `render_value` renders), for checks at load."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
