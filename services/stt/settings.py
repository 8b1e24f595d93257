"""Settings of the speech-to-text service (`SORIFLOW_STT_*`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from soriflow.config import ServiceSettings


class Settings(ServiceSettings):
    """STT: which Whisper model, on which engine and device."""

    port: int = Field(50051, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int | None = Field(9151, ge=0, le=65535, description="Prometheus port (empty disables).")

    stt_engine: Literal["faster-whisper", "openai-whisper"] = Field(
        "faster-whisper", description="Engine that runs the model."
    )
    stt_model: str = Field(
        "tiny.en",
        description="Model: a bundled name (`tiny.en`, `base`), a local path, `s3://` prefix or `pkg:` spec.",
    )
    stt_device: Literal["auto", "cpu", "cuda"] = Field("auto", description="`auto` uses CUDA when present.")
    stt_compute_type: str = Field(
        "auto",
        description="Precision: `auto` (int8 on CPU, float16 on GPU), `int8`, `float16`, `float32`, ...",
    )
    stt_cpu_threads: int = Field(
        0, ge=0, description="CPU threads per inference (0: one per core the process may use)."
    )
    stt_max_concurrency: int = Field(
        1,
        ge=1,
        le=64,
        description="Requests transcribed at once (each gets its own engine worker); the rest wait in line.",
    )
    stt_max_waiting: int = Field(
        16, ge=0, description="Requests allowed to wait for a worker; beyond that RESOURCE_EXHAUSTED."
    )
    stt_retry_after_s: float = Field(
        2.0, gt=0, description="Retry hint sent with RESOURCE_EXHAUSTED when the queue is full."
    )
    stt_batch_size: int = Field(
        -1,
        ge=-1,
        le=128,
        description="Batch size of faster-whisper's batched pipeline for long audio "
        "(-1: 8 on GPU, off on CPU; 0 or 1: off).",
    )
    stt_beam_size: int = Field(5, ge=1, le=20, description="Default beam size when a request gives none.")
    stt_vad_filter: bool = Field(True, description="Default of `vad_filter` when a request leaves it unset.")
    stt_max_streams: int = Field(
        8, ge=1, description="Live streams served at once; more are refused with RESOURCE_EXHAUSTED."
    )
    stt_stream_max_buffer_s: float = Field(
        15.0,
        ge=4.0,
        le=30.0,
        description="Longest audio a stream re-decodes at once: past it the committed part is trimmed "
        "(bounds memory and time per chunk on endless streams).",
    )
    stt_stream_min_chunk_s: float = Field(
        0.5, gt=0, le=5.0, description="Audio a stream gathers before the next decode (the interim cadence)."
    )
    stt_stream_silence_s: float = Field(
        0.6, gt=0, le=5.0, description="Silence (Silero VAD) that ends an utterance and triggers its final."
    )
    stt_stream_sentence_silence_s: float = Field(
        0.35,
        gt=0,
        le=5.0,
        description="Shorter silence that ends an utterance when its decoded text already ends a sentence "
        "(. ? ! and their CJK forms): the final comes sooner where the speaker has clearly finished. "
        "Set it equal to stt_stream_silence_s to turn this off.",
    )
