"""Overhead of the service: Recognize over gRPC vs the in-process engine call, same audio.

One server runs in this process on loopback; the baseline is the very engine
it loaded, called directly on the same bytes (decode + transcribe, which is
what Recognize does besides gRPC, validation, queueing and the worker
thread). Calls alternate between the two paths, in alternating order, so
that machine noise hits both alike; the figure is the ratio of median times (target <= 1.05), for a
short clip and for ~40 s of speech, with and without word timestamps.

Run from the repository root: `python -m bench.stt_overhead [--repeat 10]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import median, report

os.environ.setdefault("HF_HUB_OFFLINE", "1")


async def run(repeat: int) -> dict[str, Any]:
    from soriflow.audio import decode_audio, encode_wav_pcm16
    from soriflow.client import open_channel
    from soriflow.server import running
    from soriflow.stt.evaluation import alsa_clips, piper_clips
    from soriflow.stt.messages import options_from_config
    from soriflow.stt.service import create_service
    from soriflow.stt.settings import Settings
    from soriflow.v1 import audio_pb2, stt_pb2, stt_pb2_grpc

    settings = Settings(host="127.0.0.1", port=0, metrics_port=None, stt_device="cpu", log_level="WARNING")
    clips = piper_clips(Path(tempfile.mkdtemp(prefix="stt-overhead-")))
    pause = np.zeros(8000, np.float32)
    long_form = np.concatenate([x for c in clips for x in (c.audio.samples, pause)])
    inputs = {
        "short_clip": encode_wav_pcm16(alsa_clips()[0].audio.samples, 16000),
        "long_form": encode_wav_pcm16(long_form, 16000),
    }
    figures: dict[str, Any] = {"repeat": repeat}
    async with running(create_service(settings)) as server, open_channel(server.address) as channel:
        stub = stt_pb2_grpc.SpeechToTextServiceStub(channel)
        engine = server.service.engine  # type: ignore[attr-defined]
        for name, data in inputs.items():
            for words in (False, True):
                config = stt_pb2.RecognitionConfig(language_code="en", enable_word_time_offsets=words)
                options = options_from_config(config, engine.info)
                request = stt_pb2.RecognizeRequest(audio=audio_pb2.AudioInput(content=data), config=config)

                def direct(data: bytes = data, options: Any = options) -> str:
                    return str(engine.transcribe(decode_audio(data), options).text)

                grpc_times, direct_times = [], []
                texts = set()
                for i in range(repeat + 1):  # the first round warms both paths up
                    for path in ("grpc", "direct") if i % 2 else ("direct", "grpc"):  # alternate the order
                        started = time.perf_counter()
                        if path == "grpc":
                            response = await stub.Recognize(request, timeout=600)
                            texts.add(response.transcript.text)
                        else:
                            texts.add(await asyncio.to_thread(direct))
                        elapsed = time.perf_counter() - started
                        if i:
                            (grpc_times if path == "grpc" else direct_times).append(elapsed)
                key = f"{name}{'_words' if words else ''}"
                figures[key] = {
                    "audio_s": round(decode_audio(data).duration_s, 2),
                    "grpc_median_s": round(median(grpc_times), 4),
                    "in_process_median_s": round(median(direct_times), 4),
                    "ratio": round(median(grpc_times) / median(direct_times), 4),
                    "same_text": len(texts) == 1,
                }
                print(key, figures[key], flush=True)
    figures["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    figures["worst_ratio"] = max(v["ratio"] for v in figures.values() if isinstance(v, dict))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    figures = asyncio.run(run(args.repeat))
    summary = (
        f"gRPC Recognize / in-process engine call (median): short clip {figures['short_clip']['ratio']:.3f}, "
        f"40 s {figures['long_form']['ratio']:.3f}, with words {figures['long_form_words']['ratio']:.3f} "
        "(target <= 1.05)"
    )
    report("stt_overhead", figures, summary=summary)


if __name__ == "__main__":
    main()
