"""espeak-ng: the embedded default, every language (Korean included), formant synthesis.

The `espeak-ng` binary is run once per chunk (`--stdout --stdin`, UTF-8, `-m`
for SSML): a process per call costs a few milliseconds, keeps no state to
corrupt, and a crash takes only that call with it. Its WAV on stdout has
placeholder sizes (it is written as a stream), so the samples are taken from
the `data` chunk to the end. Voices come from `espeak-ng --voices`; a voice
name may carry a variant (`en-us+f3`, see `espeak-ng --voices=variant`).
"""

from __future__ import annotations

import logging
import shutil
import struct
import subprocess
import threading
import time

import numpy as np

from soriflow.tts.engines.base import (
    EngineAudio,
    EngineCapabilities,
    EngineFailure,
    SynthesisOptions,
    check_cancel,
    find_by_name,
)
from soriflow.tts.voices import Gender, VoiceInfo, normalize_language

log = logging.getLogger("soriflow.tts.espeak")

#: espeak-ng's default speed, in words per minute, and the range it accepts.
DEFAULT_WPM = 175
MIN_WPM, MAX_WPM = 80, 450
#: Voices preferred when a language matches several equally ("en" -> American English,
#: the service's default language).
PREFERRED = {"en-us": 1}


def parse_voices(listing: str) -> list[VoiceInfo]:
    """VoiceInfo for each line of `espeak-ng --voices` (Pty Language Age/Gender VoiceName File Other)."""
    voices: list[VoiceInfo] = []
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 5:
            continue
        priority, language, age_gender, _display, file = fields[:5]
        gender = {"M": Gender.MALE, "F": Gender.FEMALE}.get(age_gender.rsplit("/", 1)[-1], Gender.UNSPECIFIED)
        voices.append(
            VoiceInfo(
                name=language,
                engine="espeak-ng",
                language_codes=(normalize_language(language),),
                natural_sample_rate_hz=22050,
                gender=gender,
                supports_ssml=True,
                priority=PREFERRED.get(language, int(priority) if priority.isdigit() else 5),
                extra={"file": file},
            )
        )
    return voices


def parse_variants(listing: str) -> set[str]:
    """Variant names (`f3`, `klatt`, ...) from `espeak-ng --voices=variant` (files `!v/<name>`)."""
    names = set()
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5 and fields[4].startswith("!v/"):
            names.add(fields[4][3:].lower())
    return names


def wav_samples(data: bytes) -> tuple[np.ndarray, int]:
    """Samples and rate of espeak-ng's streamed 16-bit WAV (sizes in the header are placeholders)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise EngineFailure(f"espeak-ng wrote no WAV ({len(data)} bytes on stdout)")
    pos, rate, bits = 12, 0, 0
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if chunk == b"fmt ":
            _tag, _channels, rate, _bps, _align, bits = struct.unpack("<HHIIHH", data[pos + 8 : pos + 24])
        elif chunk == b"data":
            if bits != 16 or rate <= 0:
                raise EngineFailure(f"espeak-ng wrote an unexpected WAV format ({bits}-bit, {rate} Hz)")
            pcm = data[pos + 8 :]
            pcm = pcm[: len(pcm) // 2 * 2]
            return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0, rate
        pos += 8 + size + (size & 1)
    raise EngineFailure("espeak-ng's WAV has no data chunk")


class EspeakEngine:
    """espeak-ng through its command-line program."""

    name = "espeak-ng"
    capabilities = EngineCapabilities(
        ssml=True,
        lexicon_mode="rewrite",
        max_input_bytes=4000,
        rate_range=(MIN_WPM / DEFAULT_WPM, MAX_WPM / DEFAULT_WPM),
    )

    def __init__(self, binary: str = "espeak-ng", *, timeout_s: float = 120.0) -> None:
        self.binary = binary
        self.timeout_s = timeout_s
        self._voices: list[VoiceInfo] = []
        self._variants: set[str] = set()

    def _run(self, args: list[str], text: str = "", cancel: threading.Event | None = None) -> bytes:
        path = shutil.which(self.binary)
        if path is None:
            raise EngineFailure(
                f"espeak-ng is not installed ({self.binary!r} not found): apt-get install espeak-ng"
            )
        try:
            proc = subprocess.Popen(
                [path, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError as exc:
            raise EngineFailure(f"espeak-ng could not start: {exc.strerror}") from None
        deadline = time.monotonic() + self.timeout_s
        payload: bytes | None = text.encode("utf-8")
        try:
            while True:
                try:
                    out, err = proc.communicate(payload, timeout=0.1)
                    break
                except subprocess.TimeoutExpired:
                    payload = None  # already handed over; communicate() keeps feeding it
                    if cancel is not None:
                        check_cancel(cancel)
                    if time.monotonic() > deadline:
                        raise EngineFailure(f"espeak-ng took over {self.timeout_s:.0f}s") from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            reason = err.decode(errors="replace").strip()[-300:] or "no message"
            raise EngineFailure(f"espeak-ng failed (exit {proc.returncode}): {reason}")
        return out

    def load(self) -> None:
        self._voices = parse_voices(self._run(["--voices"]).decode("utf-8", errors="replace"))
        self._variants = parse_variants(self._run(["--voices=variant"]).decode("utf-8", errors="replace"))
        if not self._voices:
            raise EngineFailure("espeak-ng lists no voices: is espeak-ng-data installed?")
        log.info("espeak-ng: %d voices, %d variants", len(self._voices), len(self._variants))

    def voices(self) -> list[VoiceInfo]:
        return list(self._voices)

    def find_voice(self, name: str) -> VoiceInfo | None:
        base_name, _, variant = name.partition("+")
        base = find_by_name(self._voices, base_name)
        if base is None or not variant:
            return base
        if variant.lower() not in self._variants:
            return None
        gender = Gender.FEMALE if variant.lower().startswith("f") and variant[1:].isdigit() else base.gender
        return VoiceInfo(
            f"{base.name}+{variant.lower()}",
            base.engine,
            base.language_codes,
            base.natural_sample_rate_hz,
            gender,
            base.supports_ssml,
            base.priority,
            base.extra,
        )

    def synthesize(
        self, text: str, *, ssml: bool, voice: VoiceInfo, options: SynthesisOptions, cancel: threading.Event
    ) -> EngineAudio:
        check_cancel(cancel)
        wpm = round(min(max(DEFAULT_WPM * options.speaking_rate, MIN_WPM), MAX_WPM))
        args = ["--stdout", "--stdin", "-b", "1", "-v", voice.name, "-s", str(wpm)]
        if ssml:
            args.append("-m")
        samples, rate = wav_samples(self._run(args, text, cancel))
        return EngineAudio(samples, rate)

    def reset(self) -> None:
        """Nothing persists between calls (one process each); re-reading the voices checks the binary."""
        try:
            self.load()
        except EngineFailure as exc:
            log.warning("espeak-ng is still failing after a reset: %s", exc.message)

    def close(self) -> None:
        pass
