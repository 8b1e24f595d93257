"""TTS round trip: speak English sentences with each offline engine, transcribe them, report WER.

Two sets of sentences: the first 20 Harvard sentences (IEEE 1969, phonetically
balanced and deliberately low in context: the usual intelligibility test) and
10 call-center replies (what the service says on Amazon Connect). Each is
synthesized in-process by each offline engine (espeak-ng, piper) and
transcribed in-process by the STT service's engine
(`soriflow.stt.engines.load_engine`; the bundled Whisper base on CPU unless
--stt-model says otherwise, e.g. `tiny.en`). Reference and hypothesis are
normalised with Whisper's English normaliser and scored with jiwer. Piper is
also measured through the Amazon Connect path (8 kHz mu-law WAV), the format
callers actually hear; the same sentences read by piper at its native rate are
the baseline of that ratio. Google is not measured: it cannot be reached from
here (its client is tested against a local server instead).

Run from the repository root: `python -m bench.tts_roundtrip [--stt-model tiny.en]`.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from typing import Any

import numpy as np
import soundfile

from bench._common import report

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HARVARD = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
]

CALL_CENTER = [
    "Thank you for calling, how can I help you today?",
    "Your refund has been approved and will arrive in three to five business days.",
    "Please hold while I transfer you to the billing department.",
    "I can see that your order was shipped yesterday afternoon.",
    "Could you please confirm the last four digits of your card?",
    "Your appointment is scheduled for Monday morning at ten o'clock.",
    "We are sorry for the inconvenience caused by the delay.",
    "A confirmation email will be sent to your address shortly.",
    "Is there anything else I can help you with?",
    "Thank you for your patience, and have a wonderful day.",
]
SETS = {"harvard": HARVARD, "callcenter": CALL_CENTER}

#: (label, engine, encoding name, sample rate)
CONDITIONS = [
    ("espeak-ng", "espeak-ng", "AUDIO_ENCODING_LINEAR16", 0),
    ("piper", "piper", "AUDIO_ENCODING_LINEAR16", 0),
    ("piper_connect_mulaw_8k", "piper", "AUDIO_ENCODING_MULAW", 8000),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stt-model", default="base", help="STT model (bundled name, path, pkg:, s3://)")
    args = parser.parse_args()

    import jiwer
    from whisper.normalizers import EnglishTextNormalizer

    from soriflow.audio import Audio
    from soriflow.stt.engines import TranscribeOptions, load_engine
    from soriflow.stt.settings import Settings as SttSettings
    from soriflow.tts.settings import Settings as TtsSettings
    from soriflow.tts.synthesizer import Synthesizer
    from soriflow.v1 import audio_pb2, tts_pb2

    stt = load_engine(SttSettings(stt_model=args.stt_model, stt_device="cpu"))
    tts = Synthesizer(TtsSettings(tts_engines=["espeak-ng", "piper"]))
    tts.load()
    normalize = EnglishTextNormalizer()
    options = TranscribeOptions(language="en", word_timestamps=False, vad_filter=False)

    figures: dict[str, Any] = {"sentences": {k: len(v) for k, v in SETS.items()}, "stt_model": stt.info.name}
    for label, engine, encoding, rate in CONDITIONS:
        started = time.perf_counter()
        for set_name, sentences in SETS.items():
            refs, hyps, failures = [], [], []
            for sentence in sentences:
                request = tts_pb2.SynthesizeRequest(
                    text=sentence,
                    voice=tts_pb2.VoiceSelection(engine=engine, language_code="en-US"),
                    audio_config=tts_pb2.AudioOutputConfig(
                        encoding=audio_pb2.AudioEncoding.Value(encoding), sample_rate_hz=rate
                    ),
                )
                audio_bytes = tts.synthesize(request).audio_content
                samples, sr = soundfile.read(io.BytesIO(audio_bytes), dtype="float32")
                text = stt.transcribe(Audio(np.asarray(samples, dtype=np.float32), int(sr)), options).text
                ref, hyp = normalize(sentence), normalize(text)
                refs.append(ref)
                hyps.append(hyp)
                if ref != hyp:
                    failures.append(f"{sentence!r} -> {text.strip()!r}")
            wer = float(jiwer.wer(refs, hyps))
            figures[f"wer_{set_name}_{label}"] = round(wer, 4)
            figures[f"exact_{set_name}_{label}"] = sum(r == h for r, h in zip(refs, hyps, strict=True))
            print(f"{label} / {set_name}: WER {wer:.1%}")
            for line in failures:
                print(f"   {line}")
        print(f"{label}: {time.perf_counter() - started:.1f}s")
    native = figures["wer_harvard_piper"]
    figures["wer_ratio_connect_vs_native_piper_harvard"] = (
        round(figures["wer_harvard_piper_connect_mulaw_8k"] / native, 2) if native else None
    )
    report(
        "tts_roundtrip",
        figures,
        summary=(
            f"WER (transcribed by Whisper {stt.info.name}), Harvard / call-center sentences: espeak-ng "
            f"{figures['wer_harvard_espeak-ng']:.1%} / {figures['wer_callcenter_espeak-ng']:.1%}, piper "
            f"{figures['wer_harvard_piper']:.1%} / {figures['wer_callcenter_piper']:.1%}, piper as 8 kHz "
            f"mu-law Connect WAV {figures['wer_harvard_piper_connect_mulaw_8k']:.1%} / "
            f"{figures['wer_callcenter_piper_connect_mulaw_8k']:.1%}"
        ),
        command="python -m bench.tts_roundtrip",
    )


if __name__ == "__main__":
    main()
