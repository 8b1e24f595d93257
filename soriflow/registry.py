"""The services the runtime knows, by name, imported only when asked for.

Each service package provides `settings.Settings`,
`service.create_service(settings)` and `cli.register(app, groups)` (its
`soriflow` commands), and may offer named hooks: functions the runtime or
another service calls without importing the package (the demo and `soriflow
watch` show a pronunciation score with scoring's own report). This module is
how the runtime reaches a service: `soriflow/` never imports one (a test
checks the import graph). Importing lazily keeps `soriflow --help` fast and
lets a slim image carry only its own service's dependencies.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from soriflow.errors import NotFound

if TYPE_CHECKING:
    from soriflow.config import ServiceSettings
    from soriflow.server import GrpcService


@dataclass(frozen=True)
class ServiceEntry:
    name: str
    package: str
    description: str
    extra: str
    #: Hook name -> "module:function" inside the package (see `hook`).
    hooks: Mapping[str, str] = field(default_factory=dict)

    @property
    def cli_module(self) -> str:
        """The module whose `register(app, groups)` adds this service's commands."""
        return f"{self.package}.cli"

    def hook(self, name: str) -> Callable[..., Any] | None:
        """A hook's function; None when the service offers none by that name or is not installed."""
        target = self.hooks.get(name)
        if target is None:
            return None
        module, _, function = target.partition(":")
        try:
            found: Callable[..., Any] = getattr(self._import(module), function)
        except NotFound:
            return None
        return found

    def settings_class(self) -> type[ServiceSettings]:
        module = self._import("settings")
        cls: type[ServiceSettings] = module.Settings
        return cls

    def load_settings(self, **overrides: Any) -> ServiceSettings:
        return self.settings_class()(**overrides)

    def create(self, settings: ServiceSettings) -> GrpcService[Any]:
        service: GrpcService[Any] = self._import("service").create_service(settings)
        return service

    async def run(self, settings: ServiceSettings) -> int:
        """Serves until SIGTERM; returns the exit code. A service that is not a gRPC server (the
        live edge speaks HTTP and WebSocket) provides its own `serve(settings)` coroutine."""
        module = self._import("service")
        if hasattr(module, "serve"):
            code: int = await module.serve(settings)
            return code
        from soriflow.server import serve

        return await serve(self.create(settings))

    def _import(self, module: str) -> Any:
        full = f"{self.package}.{module}"
        try:
            return importlib.import_module(full)
        except ModuleNotFoundError as exc:
            if exc.name in (full, self.package):
                raise NotFound(
                    f"the {self.name} service is not part of this installation ({full} is missing)"
                ) from exc
            raise NotFound(
                f"the {self.name} service needs the '{exc.name}' package: "
                f"pip install 'soriflow[{self.extra}]'"
            ) from exc


SERVICES: dict[str, ServiceEntry] = {
    entry.name: entry
    for entry in (
        ServiceEntry(
            "gateway", "soriflow.gateway", "SQS consumer, pipelines, job store and job API", "gateway"
        ),
        ServiceEntry("stt", "soriflow.stt", "Whisper speech to text, batch and streaming", "stt"),
        ServiceEntry(
            "scoring",
            "soriflow.scoring",
            "pronunciation assessment",
            "scoring",
            hooks={
                # print_result(score: ScoreResponse, console: rich Console, *, title: str)
                "print_result": "report:print_score",
                # plot_result(score: ScoreResponse, path: Path, *, title: str) -> draws a PNG
                "plot_result": "plot:plot_contours",
            },
        ),
        ServiceEntry(
            "summarizer",
            "soriflow.summarizer",
            "summaries with seq2seq, instruction LMs or TextRank",
            "summarizer",
        ),
        ServiceEntry("tts", "soriflow.tts", "speech synthesis (Google, Polly, espeak-ng, piper)", "tts"),
        ServiceEntry(
            "live",
            "soriflow.gateway.live",
            "live captions: WebSocket edge and page over STT streams",
            "gateway",
        ),
    )
}


def hook(service: str, name: str) -> Callable[..., Any] | None:
    """`SERVICES[service].hook(name)`, for callers outside the service."""
    entry = SERVICES.get(service)
    return entry.hook(name) if entry else None


def get_service(name: str) -> ServiceEntry:
    try:
        return SERVICES[name]
    except KeyError:
        raise NotFound(f"unknown service {name!r}; choose one of: {', '.join(SERVICES)}") from None
