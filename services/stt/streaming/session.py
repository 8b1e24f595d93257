"""StreamingRecognize on the event loop: read requests, decode bytes, step the policy, answer.

Reading and transcribing run concurrently: a reader task takes messages off
the stream and decodes their bytes as they come, while the main loop feeds
the audio to the `StreamingTranscriber` in slices of at most `min_chunk_s`
and runs each step in a worker thread. Slices keep utterance ends where they
are when audio comes faster than real time (a file, or a backlog after a
slow decode); only the latest slice is decoded for an interim, so a backlog
is worked off rather than paid for one decode per slice. When more than
`_MAX_BACKLOG_S` of audio waits, the reader stops reading, so gRPC flow
control slows the client instead of memory growing.

The VAD scores audio in the reader, as it arrives, ahead of transcription:
when speech ends while an interim decode is running, that decode is
interrupted (at its next encoder/decoder pass) so that the decode the final
needs starts at once.

Protocol errors are INVALID_ARGUMENT: audio before the config, a second
config, a missing or wrong encoding. Cancellation or a passed deadline
cancels this coroutine; the running step sees its cancel event and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import numpy as np

from soriflow.errors import Cancelled, InvalidArgument
from soriflow.stt.engines.base import SAMPLE_RATE, Engine
from soriflow.stt.messages import options_from_config, word_to_proto
from soriflow.stt.metrics import AUDIO_SECONDS, STREAM_FINAL_LATENCY, STREAMS_ACTIVE
from soriflow.stt.streaming.decoders import FloatArray, StreamDecoder, make_decoder
from soriflow.stt.streaming.transcriber import StreamingOptions, StreamingTranscriber, StreamResult
from soriflow.stt.streaming.vad import VadTimeline
from soriflow.v1 import stt_pb2

if TYPE_CHECKING:
    from soriflow.stt.service import SttService

#: Audio waiting to be transcribed beyond which the reader pauses (client faster than real time).
_MAX_BACKLOG_S = 30.0
#: Least new audio between two policy steps (VAD granularity of utterance ends).
_STEP_S = 0.1
#: Silence after which a running interim decode is interrupted in favour of the final's.
_INTERRUPT_S = 0.2


def result_to_proto(result: StreamResult, *, with_words: bool) -> stt_pb2.StreamingRecognitionResult:
    return stt_pb2.StreamingRecognitionResult(
        text=result.text,
        is_final=result.is_final,
        stability=result.stability,
        stable_text=result.stable_text,
        words=[word_to_proto(w) for w in result.words] if with_words else [],
        start_ms=round(result.start * 1000),
        end_ms=round(result.end * 1000),
        utterance_index=result.utterance_index,
        language_code=result.language,
        language_probability=result.language_probability,
    )


class _Reader:
    """Takes audio messages off the stream and decodes them, off the main loop's back."""

    def __init__(
        self,
        requests: AsyncIterator[stt_pb2.StreamingRecognizeRequest],
        decoder: StreamDecoder,
        vad: VadTimeline,
    ) -> None:
        self.requests = requests
        self.decoder = decoder
        self.vad = vad
        #: Called after new audio has been scored by the VAD (to interrupt a moot interim decode).
        self.on_audio: Callable[[], None] = lambda: None
        self.backlog: deque[FloatArray] = deque()
        self.backlog_samples = 0
        self.done = False
        self.error: BaseException | None = None
        self.arrived = asyncio.Event()
        self.space = asyncio.Event()
        self.space.set()
        #: (stream seconds received, wall clock) marks, to measure final latency.
        self.marks: deque[tuple[float, float]] = deque(maxlen=4096)
        self.received_s = 0.0

    def _add(self, samples: FloatArray) -> None:
        if samples.size:
            self.vad.feed(samples)  # ~0.2 ms per 100 ms chunk: fine on the event loop
            self.backlog.append(samples)
            self.backlog_samples += samples.size
            self.received_s += samples.size / SAMPLE_RATE
            self.marks.append((self.received_s, time.perf_counter()))
            if self.backlog_samples > _MAX_BACKLOG_S * SAMPLE_RATE:
                self.space.clear()
            self.on_audio()
        self.arrived.set()

    async def run(self) -> None:
        try:
            async for message in self.requests:
                kind = message.WhichOneof("streaming_request")
                if kind == "streaming_config":
                    raise InvalidArgument(
                        "a second streaming_config was sent: only the first message carries it",
                        field="streaming_config",
                    )
                if kind != "audio_content":
                    raise InvalidArgument(
                        "empty StreamingRecognizeRequest: set audio_content", field="audio_content"
                    )
                if message.audio_content:
                    self._add(await self._decode(self.decoder.feed, message.audio_content))
                await self.space.wait()
            self._add(await self._decode(self.decoder.finish))
        except BaseException as exc:  # handed to the main loop, which raises it to the client
            self.error = exc
        finally:
            self.done = True
            self.arrived.set()

    @staticmethod
    async def _decode(fn: Callable[..., FloatArray], *args: bytes) -> FloatArray:
        """Decodes in a thread; undecodable bytes are the `audio_content` field's fault."""
        try:
            return await asyncio.to_thread(fn, *args)
        except InvalidArgument as exc:
            raise InvalidArgument(exc.message, field="audio_content") from exc

    def take(self, max_samples: int) -> FloatArray:
        """Up to `max_samples` of the oldest waiting audio."""
        parts: list[FloatArray] = []
        count = 0
        while self.backlog and count < max_samples:
            block = self.backlog[0]
            need = max_samples - count
            if block.size <= need:
                parts.append(self.backlog.popleft())
                count += block.size
            else:
                parts.append(block[:need])
                self.backlog[0] = block[need:]
                count += need
        self.backlog_samples -= count
        if self.backlog_samples <= _MAX_BACKLOG_S * SAMPLE_RATE / 2:
            self.space.set()
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def arrival_of(self, stream_s: float) -> float | None:
        """Wall clock at which audio up to `stream_s` had arrived."""
        for received, wall in self.marks:
            if received >= stream_s - 1e-3:
                return wall
        return None


async def serve_stream(
    service: SttService, engine: Engine, requests: AsyncIterator[stt_pb2.StreamingRecognizeRequest]
) -> AsyncIterator[stt_pb2.StreamingRecognizeResponse]:
    """The responses of one StreamingRecognize call."""
    settings = service.settings
    first = await anext(requests, None)
    if first is None:
        return
    if first.WhichOneof("streaming_request") != "streaming_config":
        raise InvalidArgument(
            "audio_content came before streaming_config: send the config as the first message",
            field="streaming_config",
        )
    config = first.streaming_config
    try:
        decode = options_from_config(
            config.config, engine.info, default_beam_size=settings.stt_beam_size, default_vad=True
        )
        if config.config.channel_mode == stt_pb2.CHANNEL_MODE_SEPARATE:
            raise InvalidArgument(
                "CHANNEL_MODE_SEPARATE does not apply to streams (they are mixed to mono): "
                "open one stream per channel"
            )
        decoder = make_decoder(config.encoding, config.sample_rate_hz, config.channel_count)
    except InvalidArgument as exc:  # the config's fault, not the audio's: relays report them apart
        raise InvalidArgument(exc.message, field="streaming_config") from exc
    with_words = config.config.enable_word_time_offsets
    policy = StreamingOptions(
        decode=decode,
        interim_results=config.interim_results,
        min_chunk_s=settings.stt_stream_min_chunk_s,
        silence_s=settings.stt_stream_silence_s,
        sentence_silence_s=min(settings.stt_stream_sentence_silence_s, settings.stt_stream_silence_s),
        max_buffer_s=settings.stt_stream_max_buffer_s,
    )
    vad = VadTimeline()
    transcriber = StreamingTranscriber(engine, policy, vad)
    reader = _Reader(requests, decoder, vad)
    interrupt: list[threading.Event] = []
    moot = threading.Event()

    def interrupt_moot_decode() -> None:
        """Speech has just ended while an interim decode runs: stop it, the final's decode is next."""
        if interrupt and transcriber.decoding_interim and vad.trailing_silence() >= _INTERRUPT_S:
            moot.set()
            interrupt[0].set()

    def step(cancel: threading.Event, *, decode: bool) -> list[StreamResult]:
        """One policy step; an interim decode stopped by the client (not as moot) counts as cancelled."""
        results = transcriber.step(cancel, decode=decode)
        if transcriber.interim_stopped and not moot.is_set():
            raise Cancelled("the client cancelled or its deadline passed during an interim decode")
        return results

    reader.on_audio = interrupt_moot_decode
    slice_samples = int(min(policy.min_chunk_s, 0.5) * SAMPLE_RATE)

    def respond(results: list[StreamResult]) -> stt_pb2.StreamingRecognizeResponse:
        now = time.perf_counter()
        for result in results:
            if result.is_final:
                arrived = reader.arrival_of(result.end)
                if arrived is not None:
                    STREAM_FINAL_LATENCY.observe(now - arrived)
        return stt_pb2.StreamingRecognizeResponse(
            results=[result_to_proto(r, with_words=with_words) for r in results],
            audio_processed_ms=round(transcriber.received * 1000),
        )

    async with service.streams.slot():
        STREAMS_ACTIVE.inc()
        task = asyncio.create_task(reader.run(), name="stt-stream-reader")
        last_step = 0.0
        try:
            while True:
                if not reader.backlog:
                    if reader.done:
                        break
                    await reader.arrived.wait()
                    reader.arrived.clear()
                if reader.error is not None:
                    raise reader.error
                transcriber.push(reader.take(slice_samples))
                if transcriber.received - last_step < _STEP_S and not reader.done:
                    continue
                last_step = transcriber.received
                latest = not reader.backlog
                event = threading.Event()
                moot.clear()
                interrupt[:] = [event]
                try:
                    results = await service.runner.run(
                        functools.partial(step, decode=latest), path="stream", cancel=event
                    )
                finally:
                    interrupt.clear()
                if results:
                    yield respond(results)
            if reader.error is not None:
                raise reader.error
            results = await service.runner.run(lambda cancel: transcriber.finish(cancel), path="stream")
            yield respond(results)
        finally:
            AUDIO_SECONDS.labels("stream").inc(transcriber.received)
            STREAMS_ACTIVE.dec()
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            await asyncio.to_thread(decoder.close)
