"""STT word error rate: the service against faster-whisper called directly, on the same audio.

Corpora: Debian's alsa-utils clips (a person reading the channel names;
the file name is the transcript, `Noise.wav` excluded), and ten everyday
sentences synthesized with espeak-ng and with the piper `en_US-joe-medium`
voice (TTS round trips). Each clip goes (a) through the running service's
Recognize over gRPC on loopback, and (b) straight into
`faster_whisper.WhisperModel.transcribe` with the same model, precision,
beam size, VAD and language — the baseline. Text is normalized with
Whisper's English normalizer; WER is per corpus (errors / reference words).
The service must score exactly the baseline's WER. Also measured: the
engine with the 10 s encoder window that streaming decodes use (the clips are
all shorter than 10 s), its WER and its speed-up over the 30 s window.

With a multilingual model (`--model base`) a Korean corpus is added: call-centre sentences in
espeak-ng's Korean voice, scored by character error rate (the `metric` field says which).

Run from the repository root: `python -m bench.stt_wer [--model tiny.en|base]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import report

os.environ.setdefault("HF_HUB_OFFLINE", "1")


async def run(model: str, beam_size: int) -> dict[str, Any]:
    from faster_whisper import WhisperModel

    from soriflow.audio import decode_audio, encode_wav_pcm16
    from soriflow.client import open_channel
    from soriflow.server import running
    from soriflow.stt.engines import TranscribeOptions, cpu_threads
    from soriflow.stt.evaluation import (
        alsa_clips,
        corpus_error_rate,
        espeak_clips,
        korean_espeak_clips,
        normalize,
        piper_clips,
    )
    from soriflow.stt.models import locate_model
    from soriflow.stt.service import create_service
    from soriflow.stt.settings import Settings
    from soriflow.v1 import audio_pb2, stt_pb2, stt_pb2_grpc

    settings = Settings(
        host="127.0.0.1",
        port=0,
        metrics_port=None,
        stt_model=model,
        stt_device="cpu",
        stt_compute_type="int8",
        stt_beam_size=beam_size,
        log_level="WARNING",
    )
    directory = Path(tempfile.mkdtemp(prefix="stt-wer-"))
    corpora = {"alsa": alsa_clips(), "espeak": espeak_clips(directory), "piper": piper_clips(directory)}
    languages = dict.fromkeys(corpora, "en")
    if not model.endswith(".en"):  # multilingual: the Korean corpus too, scored by CER
        corpora["espeak_korean"] = korean_espeak_clips(directory)
        languages["espeak_korean"] = "ko"
    direct = WhisperModel(
        str(locate_model(model, settings).path),
        device="cpu",
        compute_type="int8",
        cpu_threads=cpu_threads(settings),
    )
    figures: dict[str, Any] = {"model": model, "beam_size": beam_size, "compute_type": "int8", "corpora": {}}
    identical = total = 0
    async with running(create_service(settings)) as server, open_channel(server.address) as channel:
        stub = stt_pb2_grpc.SpeechToTextServiceStub(channel)
        engine = server.service.engine  # type: ignore[attr-defined]
        for name, clips in corpora.items():
            language = languages[name]
            short_options = TranscribeOptions(
                language=language, beam_size=beam_size, word_timestamps=False, short_window=True
            )
            service_text, direct_text, short_text = [], [], []
            service_s = direct_s = short_s = 0.0
            for clip in clips:
                data = encode_wav_pcm16(clip.audio.samples, clip.audio.sample_rate)
                started = time.perf_counter()
                response = await stub.Recognize(
                    stt_pb2.RecognizeRequest(
                        audio=audio_pb2.AudioInput(content=data),
                        config=stt_pb2.RecognitionConfig(language_code=language, beam_size=beam_size),
                    ),
                    timeout=600,
                )
                service_s += time.perf_counter() - started
                service_text.append(response.transcript.text)
                started = time.perf_counter()
                samples = decode_audio(data).samples  # the same bytes the service decoded
                segments, _ = direct.transcribe(
                    samples, language=language, beam_size=beam_size, vad_filter=True
                )
                direct_text.append(" ".join(s.text.strip() for s in segments))
                direct_s += time.perf_counter() - started
                # The 10 s encoder window streaming uses, on the same clip (clips are under 10 s).
                started = time.perf_counter()
                short_text.append(engine.transcribe(decode_audio(data), short_options).text)
                short_s += time.perf_counter() - started
            refs = [c.reference for c in clips]
            same = sum(normalize(a) == normalize(b) for a, b in zip(service_text, direct_text, strict=True))
            identical += same
            total += len(clips)
            audio_s = sum(c.audio.duration_s for c in clips)
            metric, service_rate = corpus_error_rate(refs, service_text, language)
            # Keys keep their historical `wer_` names; `metric` says when the rate is a CER (Korean).
            figures["corpora"][name] = {
                "clips": len(clips),
                "language": language,
                "metric": metric,
                "reference_words": sum(len(normalize(r).split()) for r in refs),
                "audio_s": round(audio_s, 1),
                "wer_service": round(service_rate, 4),
                "wer_faster_whisper_direct": round(corpus_error_rate(refs, direct_text, language)[1], 4),
                "identical_transcripts": same,
                "rtf_service": round(service_s / audio_s, 3),
                "rtf_direct": round(direct_s / audio_s, 3),
                "wer_short_window": round(corpus_error_rate(refs, short_text, language)[1], 4),
                "short_window_speedup": round(direct_s / short_s, 2),
            }
            print(name, figures["corpora"][name], flush=True)
    figures["service_matches_direct"] = all(
        c["wer_service"] == c["wer_faster_whisper_direct"] for c in figures["corpora"].values()
    )
    figures["identical_transcripts"] = f"{identical}/{total}"
    figures["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--beam-size", type=int, default=5)
    args = parser.parse_args()
    figures = asyncio.run(run(args.model, args.beam_size))
    corpora = figures["corpora"]
    summary = (
        f"{args.model} int8 WER service/direct: "
        + ", ".join(
            f"{k} {v['wer_service']:.3f}/{v['wer_faster_whisper_direct']:.3f}" for k, v in corpora.items()
        )
        + f"; identical transcripts {figures['identical_transcripts']}"
    )
    report(f"stt_wer_{args.model.replace('.', '_')}", figures, summary=summary)


if __name__ == "__main__":
    main()
