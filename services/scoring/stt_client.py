"""Word timestamps from the STT service (stt.proto `Recognize` with word time offsets).

Depends only on the proto: the audio is sent as the 16 kHz mono WAV the
scorer works on (so both sides share one time base, and an `s3://` input is
fetched once), and errors come back with their status code via
`soriflow.errors.from_rpc_error` (UNAVAILABLE when the service cannot be
reached, with the address and the setting to fix).
"""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import numpy.typing as npt

from soriflow.audio import encode_wav_pcm16
from soriflow.client import open_channel
from soriflow.config import CommonSettings
from soriflow.errors import SoriflowError, Unavailable, from_rpc_error
from soriflow.scoring.model import TimedWord
from soriflow.scoring.timing import Span
from soriflow.v1 import audio_pb2, stt_pb2, stt_pb2_grpc


class SttClient:
    """A lazily opened channel to the STT service, reused across requests."""

    def __init__(
        self, address: str, settings: CommonSettings | None = None, *, timeout_s: float = 60.0
    ) -> None:
        self.address = address
        self.settings = settings
        self.timeout_s = timeout_s
        self._channel: grpc.aio.Channel | None = None
        self._lock = asyncio.Lock()

    async def _stub(self) -> stt_pb2_grpc.SpeechToTextServiceStub:
        async with self._lock:
            if self._channel is None:
                self._channel = open_channel(self.address, self.settings)
            return stt_pb2_grpc.SpeechToTextServiceStub(self._channel)

    async def words(
        self, samples: npt.NDArray[np.float32], rate: int, language: str, *, timeout_s: float | None = None
    ) -> list[TimedWord]:
        """The recognised words with times; raises the typed error of the STT call."""
        request = stt_pb2.RecognizeRequest(
            audio=audio_pb2.AudioInput(content=encode_wav_pcm16(samples, rate)),
            config=stt_pb2.RecognitionConfig(language_code=language, enable_word_time_offsets=True),
        )
        stub = await self._stub()
        timeout = self.timeout_s if timeout_s is None else max(0.1, min(timeout_s, self.timeout_s))
        try:
            response = await stub.Recognize(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                raise Unavailable(
                    f"the STT service at {self.address} is unavailable ({exc.details()}); start it, fix "
                    "SORIFLOW_STT_ADDRESS, or pass word timestamps in the request"
                ) from exc
            error: SoriflowError = from_rpc_error(exc, service="stt")
            raise error from exc
        return [
            TimedWord(
                w.word, Span(w.start_ms / 1000.0, max(w.end_ms, w.start_ms) / 1000.0), float(w.confidence)
            )
            for w in response.transcript.words
        ]

    async def close(self) -> None:
        async with self._lock:
            if self._channel is not None:
                await self._channel.close()
                self._channel = None
