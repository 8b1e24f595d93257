"""Live streaming at real-time pace, through gRPC and through the WebSocket edge: latency, cadence, WER.

A stream of the ten piper sentences with 1.5 s of silence between them is
sent to StreamingRecognize (in-process server on loopback, tiny.en int8 on
CPU) as 16 kHz LINEAR16 in 100 ms chunks, each sent when its audio would
have been fully captured by a microphone (chunk k at t0 + (k+1) x 100 ms).
The same stream is also sent through the live edge (`/v1/live`, pcm16
frames, in-process on loopback in front of the same server): gRPC and
WebSocket streams alternate, so both paths see the same load, and the
WebSocket path is reported as a ratio of the gRPC one (target: at most 1.05).
For each utterance:

- latency = arrival of its final result - the moment the audio of its last
  word had been sent (speech end found from the clip's energy, rounded up to
  the chunk that carries it);
- interim cadence = gaps between consecutive results received while the
  utterance is being spoken.

The stream is sent `--repeat` times (one after the other) and the figures pool
all utterances.

Baseline in the same run: Recognize on the same utterance alone (what a
non-streaming system would need after the utterance ends, plus nothing for
detecting the end); the ratio latency / unary time is reported with it.
whisper_streaming reports 3.3 s average latency (large-v2 on GPU); the aim
here is under 1.5 s with tiny.en on a 2-core CPU.

Run from the repository root: `python -m bench.stt_streaming [--sentences 10] [--repeat 2]`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import median, percentile, report

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CHUNK_S = 0.1
GAP_S = 1.5


def speech_bounds(samples: np.ndarray, rate: int = 16000) -> tuple[float, float]:
    """First and last 10 ms frame above -40 dBFS: where the voice starts and stops."""
    frame = rate // 100
    frames = samples[: len(samples) // frame * frame].reshape(-1, frame)
    loud = np.flatnonzero(np.sqrt((frames**2).mean(axis=1)) > 0.01)
    return loud[0] * frame / rate, (loud[-1] + 1) * frame / rate


async def stream_once(stub: Any, pcm: bytes) -> tuple[float, list[tuple[float, Any]]]:
    """Streams `pcm` at real-time pace; returns the start time and every result with its arrival."""
    from soriflow.v1 import audio_pb2, stt_pb2

    step = int(CHUNK_S * 16000) * 2
    received: list[tuple[float, Any]] = []
    t0 = 0.0

    async def requests() -> AsyncIterator[Any]:
        nonlocal t0
        yield stt_pb2.StreamingRecognizeRequest(
            streaming_config=stt_pb2.StreamingRecognitionConfig(
                config=stt_pb2.RecognitionConfig(language_code="en", enable_word_time_offsets=True),
                encoding=audio_pb2.AUDIO_ENCODING_LINEAR16,
                sample_rate_hz=16000,
                interim_results=True,
            )
        )
        t0 = time.perf_counter()
        for k, at in enumerate(range(0, len(pcm), step)):
            delay = t0 + (k + 1) * CHUNK_S - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            yield stt_pb2.StreamingRecognizeRequest(audio_content=pcm[at : at + step])

    async for response in stub.StreamingRecognize(requests(), timeout=600):
        now = time.perf_counter()
        received.extend((now, result) for result in response.results)
    return t0, received


async def ws_stream_once(url: str, pcm: bytes) -> tuple[float, list[tuple[float, Any]]]:
    """Streams `pcm` through the WebSocket edge at real-time pace; results as gRPC-like objects."""
    import json
    from types import SimpleNamespace

    import aiohttp

    step = int(CHUNK_S * 16000) * 2
    received: list[tuple[float, Any]] = []
    config = {"type": "config", "encoding": "pcm16", "sample_rate_hz": 16000, "language": "en"}
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, protocols=["soriflow.live.v1"]) as ws,
    ):
        await ws.send_str(json.dumps(config))
        t0 = time.perf_counter()

        async def send() -> None:
            for k, at in enumerate(range(0, len(pcm), step)):
                delay = t0 + (k + 1) * CHUNK_S - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await ws.send_bytes(pcm[at : at + step])
            await ws.send_str(json.dumps({"type": "end"}))

        sender = asyncio.create_task(send())
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            now = time.perf_counter()
            data = json.loads(message.data)
            if data["type"] in ("interim", "final"):
                received.append((now, SimpleNamespace(is_final=data["type"] == "final", **data)))
            elif data["type"] == "error":
                raise RuntimeError(f"the edge closed the stream: {data}")
        await sender
    return t0, received


def path_figures(
    runs: list[tuple[float, list[tuple[float, Any]]]],
    clips: list[Any],
    starts: list[float],
    ends: list[float],
    unary_s: list[float],
) -> dict[str, Any]:
    """Latency, cadence and WER of the finals of `runs` (one path)."""
    from soriflow.stt.evaluation import corpus_wer

    latencies, cadence, ratios, final_texts = [], [], [], []
    per_utterance = []
    for run_index, (t0, received) in enumerate(runs):
        finals = [(t, r) for t, r in received if r.is_final]
        final_texts.append(" ".join(r.text for _, r in finals))
        for i, (start, end) in enumerate(zip(starts, ends, strict=True)):
            sent = t0 + math.ceil(end / CHUNK_S - 1e-9) * CHUNK_S  # the chunk with the last word has gone out
            # The last final overlapping the utterance: the one that carries its last words (an
            # utterance of two sentences may get two finals; the first must not count as its end).
            final = next(
                ((t, r) for t, r in reversed(finals) if r.start_ms / 1000 < end and r.end_ms / 1000 > start),
                None,
            )
            heard = [t for t, r in received if not r.is_final and start <= r.end_ms / 1000 <= end + 0.3]
            cadence += [b - a for a, b in itertools.pairwise(heard)]
            entry: dict[str, Any] = {"run": run_index, "interims": len(heard)}
            if final is not None:
                latency = final[0] - sent
                latencies.append(latency)
                ratios.append(latency / unary_s[i])
                entry |= {"latency_s": round(latency, 3), "text": final[1].text}
            per_utterance.append(entry)
    references = [" ".join(c.reference for c in clips)] * len(runs)
    return {
        "streams": len(runs),
        "utterances": len(clips) * len(runs),
        "finals": sum(1 for _, received in runs for _, r in received if r.is_final),
        "latency_p50_s": round(percentile(latencies, 50), 3) if latencies else None,
        "latency_p95_s": round(percentile(latencies, 95), 3) if latencies else None,
        "latency_mean_s": round(sum(latencies) / len(latencies), 3) if latencies else None,
        "interim_gap_p50_s": round(percentile(cadence, 50), 3) if cadence else None,
        "interim_gap_p95_s": round(percentile(cadence, 95), 3) if cadence else None,
        "latency_over_unary_median": round(median(ratios), 3) if ratios else None,
        "wer_finals": round(corpus_wer(references, final_texts), 4),
        "per_utterance": per_utterance,
    }


async def run(count: int, repeat: int) -> dict[str, Any]:
    from soriflow.audio import encode_wav_pcm16
    from soriflow.client import open_channel
    from soriflow.gateway.live.service import LiveEdge
    from soriflow.gateway.live.settings import Settings as LiveSettings
    from soriflow.server import running
    from soriflow.stt.evaluation import piper_clips
    from soriflow.stt.service import create_service
    from soriflow.stt.settings import Settings
    from soriflow.v1 import audio_pb2, stt_pb2, stt_pb2_grpc

    load_start = os.getloadavg()[0]
    settings = Settings(host="127.0.0.1", port=0, metrics_port=None, stt_device="cpu", log_level="WARNING")
    clips = piper_clips(Path(tempfile.mkdtemp(prefix="stt-stream-")))[:count]
    parts, ends, starts = [np.zeros(int(GAP_S * 16000), np.float32)], [], []
    offset = GAP_S
    for clip in clips:
        first, last = speech_bounds(clip.audio.samples)
        starts.append(offset + first)
        ends.append(offset + last)
        parts += [clip.audio.samples, np.zeros(int(GAP_S * 16000), np.float32)]
        offset += clip.audio.duration_s + GAP_S
    stream = np.concatenate(parts)
    pcm = (np.clip(stream, -1, 1) * 32767).astype("<i2").tobytes()
    live_settings = LiveSettings(
        host="127.0.0.1", port=0, metrics_port=None, stt_address="", log_level="WARNING"
    )
    async with running(create_service(settings)) as server, open_channel(server.address) as channel:
        edge = LiveEdge(live_settings.model_copy(update={"stt_address": server.address}))
        await edge.start()
        stub = stt_pb2_grpc.SpeechToTextServiceStub(channel)
        # Baseline: Recognize on each utterance alone (warm-up first).
        unary_s = []
        for clip in [clips[0], *clips]:
            started = time.perf_counter()
            await stub.Recognize(
                stt_pb2.RecognizeRequest(
                    audio=audio_pb2.AudioInput(content=encode_wav_pcm16(clip.audio.samples, 16000)),
                    config=stt_pb2.RecognitionConfig(language_code="en", enable_word_time_offsets=True),
                ),
                timeout=600,
            )
            unary_s.append(time.perf_counter() - started)
        unary_s = unary_s[1:]
        url = f"ws://127.0.0.1:{edge.port}/v1/live"
        grpc_runs, ws_runs = [], []
        for _ in range(repeat):  # alternating, so both paths see the same load
            grpc_runs.append(await stream_once(stub, pcm))
            ws_runs.append(await ws_stream_once(url, pcm))
        await edge.stop()

    grpc_figures = path_figures(grpc_runs, clips, starts, ends, unary_s)
    ws_figures = path_figures(ws_runs, clips, starts, ends, unary_s)

    def ratio(key: str) -> float | None:
        a, b = ws_figures[key], grpc_figures[key]
        return round(a / b, 3) if a and b else None

    per_utterance = grpc_figures.pop("per_utterance")
    ws_per_utterance = ws_figures.pop("per_utterance")
    figures: dict[str, Any] = {
        "load_average_1m_start": round(load_start, 2),
        "load_average_1m_end": round(os.getloadavg()[0], 2),
        "stream_audio_s": round(len(stream) / 16000, 1),
        **grpc_figures,
        "unary_median_s": round(median(unary_s), 3),
        "websocket": ws_figures,
        "websocket_over_grpc_p50": ratio("latency_p50_s"),
        "websocket_over_grpc_p95": ratio("latency_p95_s"),
        "websocket_over_grpc_mean": ratio("latency_mean_s"),
        "per_utterance": per_utterance,
        "websocket_per_utterance": ws_per_utterance,
        "settings": {
            "min_chunk_s": settings.stt_stream_min_chunk_s,
            "silence_s": settings.stt_stream_silence_s,
            "sentence_silence_s": settings.stt_stream_sentence_silence_s,
            "max_buffer_s": settings.stt_stream_max_buffer_s,
            "beam_size": settings.stt_beam_size,
        },
    }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sentences", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2, help="streams run one after the other, pooled")
    args = parser.parse_args()
    figures = asyncio.run(run(args.sentences, args.repeat))
    ws = figures["websocket"]
    summary = (
        f"tiny.en int8, real-time paced: end-of-utterance -> final, gRPC p50 {figures['latency_p50_s']} s, "
        f"p95 {figures['latency_p95_s']} s; WebSocket p50 {ws['latency_p50_s']} s, p95 "
        f"{ws['latency_p95_s']} s (WebSocket/gRPC p50 {figures['websocket_over_grpc_p50']}, p95 "
        f"{figures['websocket_over_grpc_p95']}; whisper_streaming: 3.3 s); interim gap p50 "
        f"{figures['interim_gap_p50_s']} s, p95 {figures['interim_gap_p95_s']} s; finals WER gRPC "
        f"{figures['wer_finals']}, WebSocket {ws['wer_finals']}"
    )
    report("stt_streaming", figures, summary=summary)


if __name__ == "__main__":
    main()
