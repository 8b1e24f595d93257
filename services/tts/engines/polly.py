"""Amazon Polly through boto3 (`SynthesizeSpeech`, `DescribeVoices`).

Credentials come from boto3's standard chain only (IRSA web identity, the
instance or task role, `AWS_*` variables or profiles), never from a Soriflow
setting; `tts_polly_endpoint_url` points the same client at a VPC endpoint or
a local server speaking Polly's REST-JSON protocol, which is how the tests run
the real client.

Audio is asked for in the form that loses least on the way to the service's
encoders. Polly's PCM (16-bit mono, little-endian, no header) only comes at
8 or 16 kHz, so:

* output at 8 kHz (the Connect mu-law prompt) or 16 kHz: `pcm` at that rate,
  no resampling at all;
* anything above 16 kHz (a story as MP3 at the voice's 24 kHz): `ogg_vorbis`
  (or `mp3`, `tts_polly_wideband_format`) at the voice's natural rate,
  decoded here. PCM at 16 kHz upsampled would lose everything above 8 kHz.

Each voice is spoken by the first Polly engine of `tts_polly_engines`
(default neural, then standard) that it supports; voices supporting none are
not offered. Rate, pitch and volume are applied by the service on the audio
(Polly's own `<prosody>` pitch does not work on neural voices, and a request
that works on one voice and fails on another would be worse).

Polly limits one SynthesizeSpeech call to 3,000 billed characters (6,000 with
SSML tags). The service keeps every call under `tts_polly_max_request_bytes`
(3,000) UTF-8 bytes of text or SSML, which holds whatever the script: a
character is at least one byte.

Errors keep their meaning: what is wrong with the request (SSML Polly
rejects, text too long, an engine the voice lacks) is INVALID_ARGUMENT with
Polly's code and message; throttling is RESOURCE_EXHAUSTED with a retry hint
(boto3 already retried `tts_polly_max_attempts` times); refused credentials,
server errors and timeouts are UNAVAILABLE, and the client is rebuilt for the
next request; a configured lexicon or custom voice that is missing or not
ready is FAILED_PRECONDITION (the deployment, not the caller, must fix it).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

import numpy as np

from soriflow.errors import FailedPrecondition, InvalidArgument, ResourceExhausted, SoriflowError
from soriflow.tts.engines.base import (
    EngineAudio,
    EngineCapabilities,
    EngineFailure,
    SynthesisOptions,
    check_cancel,
    find_by_name,
)
from soriflow.tts.voices import Gender, VoiceInfo, normalize_language

log = logging.getLogger("soriflow.tts.polly")

#: Polly's engines, as its API names them.
POLLY_ENGINES = ("generative", "neural", "long-form", "standard")
#: Output formats this engine may ask for above 16 kHz.
WIDEBAND_FORMATS = ("ogg_vorbis", "mp3", "pcm")
#: Rates Polly's PCM comes at.
PCM_RATES = (8000, 16000)
#: How long a failed voice listing is trusted before Polly is asked again.
VOICES_RETRY_S = 60.0
#: Polly's own voice ids are one capitalised ASCII word ("Joanna", "Seoyeon").
_POLLY_VOICE_ID = re.compile(r"[A-Z][a-z]+")

#: Polly's codes for a request the caller can fix.
_CALLER_ERRORS = {
    "TextLengthExceededException",
    "InvalidSsmlException",
    "InvalidSampleRateException",
    "LanguageNotSupportedException",
    "EngineNotSupportedException",
    "MarksNotSupportedForFormatException",
    "SsmlMarksNotSupportedForTextTypeException",
    "ValidationException",
    "InvalidParameterValue",
}
_THROTTLING = {"ThrottlingException", "TooManyRequestsException", "Throttling", "LimitExceededException"}
_CREDENTIALS = {
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "AccessDeniedException",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "MissingAuthenticationToken",
}
_DEPLOYMENT = {"LexiconNotFoundException", "ResourceNotFoundException", "ConflictException"}


def map_error(exc: Exception, *, retry_after_s: float) -> SoriflowError:
    """Soriflow's error for a failed Polly call (see the module docstring)."""
    import botocore.exceptions as bexc

    if isinstance(exc, bexc.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", "")) or str(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in _THROTTLING or status == 429:
            return ResourceExhausted(
                f"Amazon Polly is throttling this service ({code or status}: {message}); "
                f"retry in {retry_after_s:g}s",
                retry_after_s=retry_after_s,
            )
        if code in _CREDENTIALS or status in (401, 403):
            return EngineFailure(
                f"Amazon Polly refused this service's credentials ({code}: {message}); check the IAM role "
                "(IRSA service account annotation, polly:SynthesizeSpeech and polly:DescribeVoices) or "
                "the AWS_* variables"
            )
        if code in _DEPLOYMENT:
            hint = (
                " (check SORIFLOW_TTS_POLLY_LEXICON_NAMES against the lexicons in this account and region)"
                if code == "LexiconNotFoundException"
                else ""
            )
            return FailedPrecondition(f"Amazon Polly: {code}: {message}{hint}")
        if code in _CALLER_ERRORS or (400 <= status < 500 and status != 408):
            return InvalidArgument(f"Amazon Polly rejected the request: {code}: {message}")
        return EngineFailure(f"Amazon Polly failed ({code or status}): {message}")
    if isinstance(exc, bexc.NoCredentialsError | bexc.PartialCredentialsError):
        return EngineFailure(
            f"no AWS credentials for Amazon Polly: {exc} (use an IRSA service account, an instance role, "
            "or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
        )
    if isinstance(exc, bexc.ReadTimeoutError | bexc.ConnectTimeoutError):
        return EngineFailure(f"Amazon Polly did not answer in time: {exc}")
    if isinstance(exc, bexc.EndpointConnectionError | bexc.ConnectionClosedError):
        return EngineFailure(f"Amazon Polly is unreachable: {exc}")
    return EngineFailure(f"Amazon Polly failed: {type(exc).__name__}: {exc}")


def request_format(output_rate_hz: int, natural_rate_hz: int, wideband_format: str) -> tuple[str, int]:
    """(OutputFormat, SampleRate) to ask Polly for, for audio delivered at `output_rate_hz`."""
    if 0 < output_rate_hz <= PCM_RATES[0]:
        return "pcm", PCM_RATES[0]
    if 0 < output_rate_hz <= PCM_RATES[1] or wideband_format == "pcm":
        return "pcm", PCM_RATES[1]
    return wideband_format, natural_rate_hz


def natural_rate(polly_engine: str) -> int:
    """Polly's default (and best) rate for MP3/Ogg: 22,050 Hz for standard voices, 24,000 Hz otherwise."""
    return 22050 if polly_engine == "standard" else 24000


def decode_polly_audio(data: bytes, output_format: str, rate: int) -> tuple[np.ndarray, int]:
    """Samples of Polly's answer: headerless 16-bit little-endian PCM, or an MP3/Ogg Vorbis stream."""
    if output_format == "pcm":
        pcm = data[: len(data) // 2 * 2]
        return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0, rate
    from soriflow.audio import decode_audio

    try:
        audio = decode_audio(data, target_rate=None)
    except SoriflowError as exc:
        raise EngineFailure(
            f"Amazon Polly's {output_format} audio could not be decoded: {exc.message}"
        ) from exc
    return np.asarray(audio.samples, dtype=np.float32), int(audio.sample_rate)


class PollyEngine:
    """Amazon Polly voices (neural, standard, long-form, generative)."""

    name = "polly"

    def __init__(
        self,
        *,
        region: str,
        endpoint_url: str | None = None,
        engines: tuple[str, ...] = ("neural", "standard"),
        wideband_format: str = "ogg_vorbis",
        lexicon_names: tuple[str, ...] = (),
        timeout_s: float = 30.0,
        max_attempts: int = 3,
        max_request_bytes: int = 3000,
        retry_after_s: float = 5.0,
    ) -> None:
        unknown = [e for e in engines if e not in POLLY_ENGINES]
        if unknown or not engines:
            raise ValueError(f"Polly engines must be some of {list(POLLY_ENGINES)}, got {list(engines)}")
        if wideband_format not in WIDEBAND_FORMATS:
            raise ValueError(f"wideband_format must be one of {list(WIDEBAND_FORMATS)}")
        self.region = region
        self.endpoint_url = endpoint_url
        self.engines = tuple(engines)
        self.wideband_format = wideband_format
        self.lexicon_names = tuple(lexicon_names)
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.retry_after_s = retry_after_s
        self.capabilities = EngineCapabilities(
            ssml=True,
            lexicon_mode="sub",
            max_input_bytes=max_request_bytes,
            rate_range=(1.0, 1.0),
        )
        self._client: Any = None
        self._lock = threading.Lock()
        self._voices: list[VoiceInfo] | None = None
        self._voices_failed_at = 0.0
        self._last_error = ""
        self._refreshing = False

    # ------------------------------------------------------------------ client

    def _new_client(self) -> Any:
        import boto3
        import botocore.config

        config = botocore.config.Config(
            region_name=self.region,
            connect_timeout=min(10.0, self.timeout_s),
            read_timeout=self.timeout_s,
            retries={"total_max_attempts": self.max_attempts, "mode": "standard"},
        )
        # A session of its own: boto3's default session is shared by the whole process and keeps the
        # first credentials it resolved, so rotated keys (or another component's) would leak in.
        session = boto3.session.Session()
        return session.client("polly", endpoint_url=self.endpoint_url or None, config=config)

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    self._client = self._new_client()
                except Exception as exc:
                    raise map_error(exc, retry_after_s=self.retry_after_s) from exc
            return self._client

    # ------------------------------------------------------------------ voices

    def load(self) -> None:
        """Creates the client and lists the voices; Polly being unreachable does not stop the service."""
        self._refresh_voices()

    def _refresh_voices(self) -> None:
        try:
            client = self._get_client()
            raw: list[dict[str, Any]] = []
            token: str | None = None
            while True:
                kwargs: dict[str, Any] = {"IncludeAdditionalLanguageCodes": True}
                if token:
                    kwargs["NextToken"] = token
                page = client.describe_voices(**kwargs)
                raw.extend(page.get("Voices", []))
                token = page.get("NextToken")
                if not token:
                    break
        except Exception as exc:
            error = (
                exc if isinstance(exc, SoriflowError) else map_error(exc, retry_after_s=self.retry_after_s)
            )
            self._voices_failed_at = time.monotonic()
            self._last_error = error.message
            log.warning("Amazon Polly voices unavailable (%s); will retry", error.message)
            return
        voices = [v for v in (self._voice_info(item) for item in raw) if v is not None]
        self._voices = voices
        log.info("Amazon Polly: %d voices (%s) in %s", len(voices), "/".join(self.engines), self.region)

    def _voice_info(self, item: dict[str, Any]) -> VoiceInfo | None:
        supported = set(item.get("SupportedEngines") or ["standard"])
        chosen = next((e for e in self.engines if e in supported), None)
        if chosen is None or item.get("Status", "active") != "active":
            return None
        languages = [item.get("LanguageCode", ""), *(item.get("AdditionalLanguageCodes") or [])]
        gender = {"Female": Gender.FEMALE, "Male": Gender.MALE}.get(
            str(item.get("Gender")), Gender.UNSPECIFIED
        )
        return VoiceInfo(
            name=str(item["Id"]),
            engine=self.name,
            language_codes=tuple(normalize_language(code) for code in languages if code),
            natural_sample_rate_hz=natural_rate(chosen),
            gender=gender,
            supports_ssml=True,
            priority=1 + self.engines.index(chosen),
            extra={"polly_engine": chosen},
        )

    def voices(self) -> list[VoiceInfo]:
        """The voices Polly listed; while unknown, asks again in the background (never blocks a request)."""
        if self._voices is None and time.monotonic() - self._voices_failed_at > VOICES_RETRY_S:
            with self._lock:
                start = not self._refreshing
                self._refreshing = True
            if start:
                threading.Thread(target=self._background_refresh, name="polly-voices", daemon=True).start()
        return list(self._voices or [])

    def _background_refresh(self) -> None:
        try:
            self._refresh_voices()
        finally:
            self._refreshing = False

    def find_voice(self, name: str) -> VoiceInfo | None:
        voices = self.voices()
        if voices or self._voices is not None:
            return find_by_name(voices, name)
        if _POLLY_VOICE_ID.fullmatch(name):
            # Polly could not be asked yet: a Polly-like name is retryable trouble, not an unknown voice
            raise EngineFailure(
                f"Amazon Polly's voices could not be listed yet ({self._last_error or 'not tried'}), "
                f"so voice {name!r} cannot be checked; retry later"
            )
        return None

    # ------------------------------------------------------------------ synthesis

    def synthesize(
        self, text: str, *, ssml: bool, voice: VoiceInfo, options: SynthesisOptions, cancel: threading.Event
    ) -> EngineAudio:
        check_cancel(cancel)
        polly_engine = voice.extra.get("polly_engine", self.engines[0])
        output_format, rate = request_format(
            options.output_rate_hz, voice.natural_sample_rate_hz, self.wideband_format
        )
        kwargs: dict[str, Any] = {
            "Engine": polly_engine,
            "OutputFormat": output_format,
            "SampleRate": str(rate),
            "Text": text,
            "TextType": "ssml" if ssml else "text",
            "VoiceId": voice.name,
        }
        if self.lexicon_names:
            kwargs["LexiconNames"] = list(self.lexicon_names)
        try:
            response = self._get_client().synthesize_speech(**kwargs)
            stream = response["AudioStream"]
            try:
                data = stream.read()
            finally:
                stream.close()
        except SoriflowError:
            raise
        except Exception as exc:
            raise map_error(exc, retry_after_s=self.retry_after_s) from exc
        if not data:
            raise EngineFailure("Amazon Polly returned no audio")
        samples, got_rate = decode_polly_audio(data, output_format, rate)
        return EngineAudio(samples, got_rate)

    def reset(self) -> None:
        """Drops the client (and its connection pool); the next call builds a new one."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception as exc:  # closing a broken pool may fail too; nothing to save
                log.debug("closing the Polly client failed: %s", exc)

    def close(self) -> None:
        self.reset()
