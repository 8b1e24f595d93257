"""TTS engines behind one interface (`base.Engine`), created by name from settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from soriflow.errors import NotFound
from soriflow.tts.engines.base import Engine, EngineFailure

if TYPE_CHECKING:
    from soriflow.tts.settings import Settings

__all__ = ["Engine", "EngineFailure", "create_engine"]


def create_engine(name: str, settings: Settings) -> Engine:
    """An engine (not loaded yet) of the given name, configured from settings."""
    if name == "espeak-ng":
        from soriflow.tts.engines.espeak import EspeakEngine

        return EspeakEngine(settings.tts_espeak_binary, timeout_s=settings.tts_engine_timeout_s)
    if name == "piper":
        from soriflow.models import resolve_model
        from soriflow.tts.engines.piper import PiperEngine

        return PiperEngine(
            resolve_model(settings.tts_piper_model, settings).path,
            sentence_pause_ms=settings.tts_sentence_pause_ms,
        )
    if name == "google":
        from soriflow.tts.engines.google import GoogleEngine

        return GoogleEngine(
            endpoint=settings.tts_google_endpoint,
            insecure=settings.tts_google_insecure,
            timeout_s=settings.tts_google_timeout_s,
            max_request_bytes=settings.tts_google_max_request_bytes,
            retry_after_s=settings.tts_google_retry_after_s,
        )
    if name == "polly":
        from soriflow.tts.engines.polly import PollyEngine

        return PollyEngine(
            region=settings.tts_polly_region or settings.aws_region,
            endpoint_url=settings.tts_polly_endpoint_url,
            engines=tuple(settings.tts_polly_engines),
            wideband_format=settings.tts_polly_wideband_format,
            lexicon_names=tuple(settings.tts_polly_lexicon_names),
            timeout_s=settings.tts_polly_timeout_s,
            max_attempts=settings.tts_polly_max_attempts,
            max_request_bytes=settings.tts_polly_max_request_bytes,
            retry_after_s=settings.tts_polly_retry_after_s,
        )
    raise NotFound(f"unknown TTS engine {name!r}; choose espeak-ng, piper, google or polly")
