"""Renders docs/configuration.md from the settings classes, so the table cannot drift."""

from __future__ import annotations

import json
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from soriflow.config import ENV_PREFIX, CommonSettings, ServiceSettings
from soriflow.registry import SERVICES

HEADER = """# Configuration

Every Soriflow process reads its settings from environment variables prefixed
`SORIFLOW_`. This file is generated from the settings classes by
`soriflow config docs > docs/configuration.md`; a test fails when it is stale.

Lists are JSON (`SORIFLOW_TTS_ENGINES='["espeak-ng","piper"]'`); empty optional values
are unset. Secrets (`SORIFLOW_AUTH_TOKEN`, database URLs with passwords) belong in
Kubernetes Secrets, referenced by the Helm chart's `existingSecret` values.
"""


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        if info.default_factory.__name__ == "default_cache_dir":
            return "`~/.cache/soriflow`"
        value: Any = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    if value is None:
        return "unset"
    if isinstance(value, list | dict):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def _rows(cls: type[CommonSettings], fields: list[str]) -> list[str]:
    rows = []
    for name in fields:
        info = cls.model_fields[name]
        description = (info.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{ENV_PREFIX}{name.upper()}` | {_default(info)} | {description} |")
    return rows


def _table(title: str, intro: str, cls: type[CommonSettings], fields: list[str]) -> list[str]:
    return [
        f"## {title}",
        "",
        intro,
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
        *_rows(cls, fields),
        "",
    ]


def render() -> str:
    common = list(CommonSettings.model_fields)
    server = [n for n in ServiceSettings.model_fields if n not in common]
    out = [HEADER]
    out += _table("Every process", "Logging, storage, limits, peers and security.", CommonSettings, common)
    out += _table(
        "Every gRPC server",
        "Each service overrides `port` and `metrics_port` defaults (below).",
        ServiceSettings,
        [n for n in server if n not in ("port", "metrics_port")],
    )
    for entry in SERVICES.values():
        try:
            cls = entry.settings_class()
        except Exception:  # a service not installed here is left out, not guessed
            continue
        own = [n for n in cls.model_fields if n not in ServiceSettings.model_fields]
        out += _table(f"{entry.name}", f"{entry.description}.", cls, ["port", "metrics_port", *own])
    return "\n".join(out).rstrip() + "\n"
