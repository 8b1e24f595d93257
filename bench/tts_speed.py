"""TTS speed through a real server: real-time factor per engine, and how soon streaming speaks.

A TTS server (espeak-ng and piper) runs on loopback and is called over gRPC
like any client would. For each offline engine, a six-sentence paragraph is:

- synthesized with `Synthesize` (LINEAR16): the real-time factor is wall time
  over audio duration (below 1 is faster than real time);
- streamed with `SynthesizeStream`: the time to the first audio chunk is
  compared with the time to the last chunk of the same stream and with the
  unary call's total time, all measured in the same run.

The cost of each output encoding is the unary wall time relative to LINEAR16
for the same text and engine (espeak-ng, so encoding is not hidden behind
synthesis). Medians of several runs after a warm-up.

Run from the repository root: `python -m bench.tts_speed`.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import Any

from bench._common import report

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PARAGRAPH = (
    "Thank you for calling the support line. We have reviewed the request you made last week. "
    "The refund for your order has been approved and will reach your card in three to five days. "
    "If you were charged twice, the second charge will be reversed automatically. "
    "You will also receive a confirmation email with the details of this call. "
    "Is there anything else we can help you with today?"
)
REPEAT = {"espeak-ng": 5, "piper": 3}
ENCODINGS = [
    "AUDIO_ENCODING_LINEAR16",
    "AUDIO_ENCODING_MULAW",
    "AUDIO_ENCODING_MP3",
    "AUDIO_ENCODING_OGG_OPUS",
]


async def run() -> dict[str, Any]:
    from soriflow.client import open_channel
    from soriflow.server import running
    from soriflow.tts.service import create_service
    from soriflow.tts.settings import Settings
    from soriflow.v1 import audio_pb2, tts_pb2, tts_pb2_grpc

    settings = Settings(
        host="127.0.0.1", port=0, metrics_port=None, log_level="WARNING", tts_engines=["espeak-ng", "piper"]
    )
    figures: dict[str, Any] = {"sentences": 6, "words": len(PARAGRAPH.split())}

    def request(engine: str, encoding: str = "AUDIO_ENCODING_LINEAR16") -> tts_pb2.SynthesizeRequest:
        return tts_pb2.SynthesizeRequest(
            text=PARAGRAPH,
            voice=tts_pb2.VoiceSelection(engine=engine),
            audio_config=tts_pb2.AudioOutputConfig(encoding=audio_pb2.AudioEncoding.Value(encoding)),
        )

    async with running(create_service(settings)) as server, open_channel(server.address) as channel:
        stub = tts_pb2_grpc.TextToSpeechServiceStub(channel)

        async def unary(req: tts_pb2.SynthesizeRequest) -> tuple[float, float]:
            started = time.perf_counter()
            response = await stub.Synthesize(req, timeout=300)
            return time.perf_counter() - started, response.duration_ms / 1000

        async def stream(req: tts_pb2.SynthesizeRequest) -> tuple[float, float]:
            started = time.perf_counter()
            first = last = 0.0
            async for _chunk in stub.SynthesizeStream(
                tts_pb2.SynthesizeStreamRequest(request=req), timeout=300
            ):
                last = time.perf_counter() - started
                first = first or last
            return first, last

        for engine, repeat in REPEAT.items():
            await unary(request(engine))  # warm-up
            walls, firsts, lasts = [], [], []
            duration = 0.0
            for _ in range(repeat):  # interleaved, so load changes hit both alike
                wall, duration = await unary(request(engine))
                first, last = await stream(request(engine))
                walls.append(wall)
                firsts.append(first)
                lasts.append(last)
            wall, first, last = statistics.median(walls), statistics.median(firsts), statistics.median(lasts)
            figures[f"{engine}_audio_s"] = round(duration, 2)
            figures[f"{engine}_rtf"] = round(wall / duration, 4)
            figures[f"{engine}_unary_ms"] = round(wall * 1000, 1)
            figures[f"{engine}_first_chunk_ms"] = round(first * 1000, 1)
            figures[f"{engine}_stream_total_ms"] = round(last * 1000, 1)
            figures[f"{engine}_first_chunk_vs_stream_total"] = round(first / last, 3)
            figures[f"{engine}_first_chunk_vs_unary_total"] = round(first / wall, 3)
            print(
                f"{engine}: RTF {wall / duration:.3f} ({duration:.1f} s of audio in {wall * 1000:.0f} ms); "
                f"first chunk after {first * 1000:.0f} ms = {first / last:.2f} of the stream, "
                f"{first / wall:.2f} of a unary call"
            )

        base = 0.0
        for encoding in ENCODINGS:
            walls = [(await unary(request("espeak-ng", encoding)))[0] for _ in range(5)]
            wall = statistics.median(walls)
            base = base or wall
            name = encoding.removeprefix("AUDIO_ENCODING_").lower()
            figures[f"encoding_cost_{name}_vs_linear16"] = round(wall / base, 2)
            print(f"espeak-ng {name}: {wall * 1000:.0f} ms ({wall / base:.2f}x LINEAR16)")
    return figures


def main() -> None:
    figures = asyncio.run(run())
    report(
        "tts_speed",
        figures,
        summary=(
            f"RTF espeak-ng {figures['espeak-ng_rtf']:.3f}, piper {figures['piper_rtf']:.3f}; first streamed "
            f"chunk after {figures['espeak-ng_first_chunk_vs_stream_total']:.2f} (espeak-ng) and "
            f"{figures['piper_first_chunk_vs_stream_total']:.2f} (piper) of the stream's total time"
        ),
        command="python -m bench.tts_speed",
    )


if __name__ == "__main__":
    main()
