"""Google Cloud Text-to-Speech through the official client (`google-cloud-texttospeech`).

Credentials come from Google's standard mechanisms only (`google.auth.default()`:
GOOGLE_APPLICATION_CREDENTIALS, workload identity, the metadata server); the
endpoint is a setting, and `tts_google_insecure` points the same client at
an emulator or test server over plaintext with anonymous credentials, which
is how the tests exercise the real client against a local gRPC server.

Audio is requested as LINEAR16 (a WAV) at the rate the service will deliver,
so Google resamples once and the service encodes every output format the
same way for every engine. Text or SSML goes through as given; the service
keeps each request under Google's 5,000-byte limit.

Google's errors keep their meaning: INVALID_ARGUMENT stays INVALID_ARGUMENT
(with Google's message), NOT_FOUND stays NOT_FOUND, and RESOURCE_EXHAUSTED
(quota) stays RESOURCE_EXHAUSTED with Google's RetryInfo delay, or
`tts_google_retry_after_s`, as the retry hint: the caller's request was fine
and will succeed later, which is what that code and hint tell a client or the
gateway's retry policy. Rejected credentials, timeouts and Google outages are
UNAVAILABLE, and the client (with its channel) is rebuilt for the next request.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from typing import Any

import numpy as np

from soriflow.errors import InvalidArgument, NotFound, ResourceExhausted, SoriflowError
from soriflow.tts.engines.base import (
    EngineAudio,
    EngineCapabilities,
    EngineFailure,
    SynthesisOptions,
    check_cancel,
    find_by_name,
)
from soriflow.tts.voices import Gender, VoiceInfo, normalize_language

log = logging.getLogger("soriflow.tts.google")

#: How long a failed voice listing is trusted before Google is asked again.
VOICES_RETRY_S = 60.0


def retry_delay(exc: Any) -> float | None:
    """The RetryInfo delay in a Google error's details, in seconds, if there is one."""
    for detail in getattr(exc, "details", None) or []:
        delay = getattr(detail, "retry_delay", None)
        if delay is not None and (delay.seconds or delay.nanos):
            return float(delay.seconds + delay.nanos / 1e9)
    return None


def map_error(exc: Exception, *, default_retry_s: float) -> SoriflowError:
    """Soriflow's error for a failed Google call (see the module docstring)."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    message = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, gexc.InvalidArgument):
        return InvalidArgument(f"Google Cloud TTS rejected the request: {message}")
    if isinstance(exc, gexc.NotFound):
        return NotFound(f"Google Cloud TTS: {message}")
    if isinstance(exc, gexc.ResourceExhausted):
        delay = retry_delay(exc) or default_retry_s
        return ResourceExhausted(
            f"Google Cloud TTS quota exhausted: {message}; retry in {delay:g}s", retry_after_s=delay
        )
    if isinstance(exc, gexc.Unauthenticated | gexc.PermissionDenied):
        return EngineFailure(
            f"Google Cloud TTS refused this service's credentials: {message} "
            "(check GOOGLE_APPLICATION_CREDENTIALS / workload identity and the API's enablement)"
        )
    if isinstance(exc, auth_exc.DefaultCredentialsError):
        return EngineFailure(
            f"no Google credentials: {message} (set GOOGLE_APPLICATION_CREDENTIALS or use workload identity)"
        )
    if isinstance(exc, gexc.DeadlineExceeded):
        return EngineFailure(f"Google Cloud TTS did not answer in time: {message}")
    return EngineFailure(f"Google Cloud TTS failed: {type(exc).__name__}: {message}")


def _wav_to_samples(data: bytes, expected_rate: int) -> tuple[np.ndarray, int]:
    """Samples of Google's LINEAR16 answer (a WAV; headerless PCM at the asked rate is accepted too)."""
    if data[:4] == b"RIFF":
        import soundfile

        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
        return samples.mean(axis=1).astype(np.float32), int(rate)
    if not expected_rate:
        raise EngineFailure("Google Cloud TTS returned headerless audio of unknown rate")
    pcm = data[: len(data) // 2 * 2]
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0, expected_rate


class GoogleEngine:
    """Google Cloud TTS voices (Wavenet, Neural2, Standard, ...)."""

    name = "google"

    def __init__(
        self,
        *,
        endpoint: str,
        insecure: bool = False,
        timeout_s: float = 30.0,
        max_request_bytes: int = 5000,
        retry_after_s: float = 30.0,
    ) -> None:
        self.endpoint = endpoint
        self.insecure = insecure
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self.capabilities = EngineCapabilities(
            ssml=True,
            lexicon_mode="sub",
            max_input_bytes=max_request_bytes,
            rate_range=(0.25, 2.0),
            pitch=True,
            volume=True,
        )
        self._client: Any = None
        self._lock = threading.Lock()
        self._voices: list[VoiceInfo] | None = None
        self._voices_failed_at = 0.0
        self._refreshing = False

    # ------------------------------------------------------------------ client

    def _new_client(self) -> Any:
        from google.cloud import texttospeech_v1 as tts

        if self.insecure:
            import grpc
            from google.auth.credentials import AnonymousCredentials
            from google.cloud.texttospeech_v1.services.text_to_speech.transports import (
                TextToSpeechGrpcTransport,
            )

            def plaintext(host: str, **kwargs: Any) -> grpc.Channel:
                # the transport passes its own channel options (unlimited message sizes: long audio)
                return grpc.insecure_channel(host, options=kwargs.get("options"))

            transport = TextToSpeechGrpcTransport(
                host=self.endpoint,
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                channel=plaintext,
            )
            return tts.TextToSpeechClient(transport=transport)
        return tts.TextToSpeechClient(client_options={"api_endpoint": self.endpoint})

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    self._client = self._new_client()
                except Exception as exc:
                    raise map_error(exc, default_retry_s=self.retry_after_s) from exc
            return self._client

    # ------------------------------------------------------------------ voices

    def load(self) -> None:
        """Creates the client and lists the voices; Google being unreachable does not stop the service."""
        self._refresh_voices()

    def _refresh_voices(self) -> None:
        try:
            response = self._get_client().list_voices(timeout=self.timeout_s)
        except SoriflowError as exc:
            self._voices_failed_at = time.monotonic()
            log.warning("Google Cloud TTS voices unavailable (%s); will retry", exc.message)
            return
        except Exception as exc:
            self._voices_failed_at = time.monotonic()
            log.warning(
                "Google Cloud TTS voices unavailable (%s); will retry",
                map_error(exc, default_retry_s=self.retry_after_s).message,
            )
            return
        voices = []
        for v in response.voices:
            voices.append(
                VoiceInfo(
                    name=v.name,
                    engine=self.name,
                    language_codes=tuple(normalize_language(code) for code in v.language_codes),
                    natural_sample_rate_hz=int(v.natural_sample_rate_hertz) or 24000,
                    gender=Gender(int(v.ssml_gender))
                    if int(v.ssml_gender) in (0, 1, 2, 3)
                    else Gender.UNSPECIFIED,
                    supports_ssml=True,
                    priority=_priority(v.name),
                )
            )
        self._voices = voices
        log.info("Google Cloud TTS: %d voices at %s", len(voices), self.endpoint)

    def voices(self) -> list[VoiceInfo]:
        """The voices Google listed; while unknown, asks again in the background (never blocks a request)."""
        if self._voices is None and time.monotonic() - self._voices_failed_at > VOICES_RETRY_S:
            with self._lock:
                start = not self._refreshing
                self._refreshing = True
            if start:
                threading.Thread(target=self._background_refresh, name="google-voices", daemon=True).start()
        return list(self._voices or [])

    def _background_refresh(self) -> None:
        try:
            self._refresh_voices()
        finally:
            self._refreshing = False

    def find_voice(self, name: str) -> VoiceInfo | None:
        voices = self.voices()
        if voices:
            return find_by_name(voices, name)
        # Google is unreachable just now: trust a well-formed name ("ko-KR-Wavenet-A") and let Google judge.
        parts = name.split("-")
        if len(parts) >= 3 and len(parts[0]) in (2, 3) and len(parts[1]) == 2:
            return VoiceInfo(
                name, self.name, (normalize_language(f"{parts[0]}-{parts[1]}"),), 24000, supports_ssml=True
            )
        return None

    # ------------------------------------------------------------------ synthesis

    def synthesize(
        self, text: str, *, ssml: bool, voice: VoiceInfo, options: SynthesisOptions, cancel: threading.Event
    ) -> EngineAudio:
        from google.cloud import texttospeech_v1 as tts

        check_cancel(cancel)
        request = tts.SynthesizeSpeechRequest(
            input=tts.SynthesisInput(ssml=text) if ssml else tts.SynthesisInput(text=text),
            voice=tts.VoiceSelectionParams(language_code=voice.language_codes[0], name=voice.name),
            audio_config=tts.AudioConfig(
                audio_encoding=tts.AudioEncoding.LINEAR16,
                speaking_rate=options.speaking_rate,
                pitch=options.pitch_semitones,
                volume_gain_db=options.volume_gain_db,
                sample_rate_hertz=options.output_rate_hz,
            ),
        )
        try:
            response = self._get_client().synthesize_speech(request=request, timeout=self.timeout_s)
        except SoriflowError:
            raise
        except Exception as exc:
            raise map_error(exc, default_retry_s=self.retry_after_s) from exc
        samples, rate = _wav_to_samples(bytes(response.audio_content), options.output_rate_hz)
        return EngineAudio(samples, rate)

    def reset(self) -> None:
        """Closes the client and its channel; the next call builds a new one."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.transport.close()
            except Exception as exc:  # closing a broken channel may fail too; nothing to save
                log.debug("closing the Google client failed: %s", exc)

    def close(self) -> None:
        self.reset()


def _priority(name: str) -> int:
    """Prefer the more natural voice families when a request names only a language."""
    for rank, family in enumerate(("Neural2", "Wavenet", "Standard")):
        if f"-{family}-" in name:
            return rank + 1
    return 5
