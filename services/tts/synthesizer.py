"""From a SynthesizeRequest to audio: the steps every engine shares.

1. the input (text, SSML or a template) is checked: not empty, under
   `tts_max_text_chars`, SSML valid;
2. the voice is resolved (by name, else the language's best voice on the
   named or default engine, falling back to other enabled engines);
3. the text becomes sentences, rendered for that engine (SSML or text and
   pauses, lexicon applied) and checked against its per-call limit;
4. sentences are packed into chunks under the limit (one sentence per chunk
   when streaming), each chunk is one engine call per text part;
5. what the engine cannot do (rate beyond its range, pitch, volume) is done on
   its output, which is resampled (polyphase) to the output rate, joined with
   `tts_sentence_pause_ms` of silence, and encoded.

Blocking throughout: the gRPC servicer runs it in worker threads, the CLI and
benchmarks call it directly (`Synthesizer(settings).load()` then
`synthesize(request)`).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from soriflow.audio import resample
from soriflow.config import MIB
from soriflow.errors import InvalidArgument, NotFound, ResourceExhausted, SoriflowError
from soriflow.inputs import clean_text
from soriflow.tts import encoding as enc
from soriflow.tts.document import Document, Pause, Rendered, check_sizes
from soriflow.tts.engines import Engine, EngineFailure, create_engine
from soriflow.tts.engines.base import SynthesisOptions
from soriflow.tts.lexicon import Lexicon
from soriflow.tts.metrics import AUDIO_SECONDS, CHARACTERS, ENGINE_CALLS, ENGINE_FAILURES
from soriflow.tts.prosody import Prosody, apply_gain, change_tempo_and_pitch
from soriflow.tts.sentences import pack
from soriflow.tts.settings import KNOWN_ENGINES, Settings
from soriflow.tts.ssml import parse_ssml
from soriflow.tts.templates import render
from soriflow.tts.voices import VoiceInfo, voice_score, voices_for_language
from soriflow.v1 import tts_pb2

log = logging.getLogger("soriflow.tts")

FloatArray = npt.NDArray[np.float32]
#: Voice names quoted in a NOT_FOUND message before "... N more".
MAX_LISTED_VOICES = 30


@dataclass
class Chunk:
    """Sentences synthesized together: their written text and the engine inputs, in order."""

    index: int
    written: str
    parts: list[str | Pause]
    ssml: bool

    def prepared(self) -> str:
        texts = [f"<speak>{p}</speak>" if self.ssml else p for p in self.parts if isinstance(p, str)]
        return "\n".join(texts)


@dataclass
class Plan:
    """Everything decided about a request before any audio is made."""

    engine: Engine
    voice: VoiceInfo
    output: enc.OutputFormat
    prosody: Prosody
    native: SynthesisOptions
    tempo: float
    semitones: float
    gain_db: float
    sentences: list[Rendered]
    pause_ms: int

    def chunks(self, *, streaming: bool) -> list[Chunk]:
        """One chunk per sentence when streaming; else sentences packed under the engine's limit."""
        limit = self.engine.capabilities.max_input_bytes - len("<speak></speak>")
        groups = (
            [range(i, i + 1) for i in range(len(self.sentences))]
            if streaming
            else pack((s.size() for s in self.sentences), limit)
        )
        chunks = []
        for index, group in enumerate(groups):
            members = [self.sentences[i] for i in group]
            parts: list[str | Pause] = []
            for sentence in members:
                for part in sentence.parts:
                    if isinstance(part, str) and parts and isinstance(parts[-1], str):
                        parts[-1] = f"{parts[-1]} {part}"
                    else:
                        parts.append(part)
            chunks.append(Chunk(index, " ".join(s.written for s in members), parts, members[0].ssml))
        return chunks


class Synthesizer:
    """The enabled engines and the lexicon, and the steps above."""

    def __init__(self, settings: Settings, engines: dict[str, Engine] | None = None) -> None:
        self.settings = settings
        self.engines: dict[str, Engine] = dict(engines or {})
        self.lexicon = Lexicon.load(builtin=settings.tts_builtin_lexicon, override=settings.tts_lexicon_file)

    # ------------------------------------------------------------------ lifecycle

    def load(self, names: list[str] | None = None) -> None:
        """Creates and loads the enabled engines (or just `names`); blocking."""
        for name in names or self.settings.tts_engines:
            if name not in self.engines:
                engine = create_engine(name, self.settings)
                started = time.perf_counter()
                engine.load()
                log.info("engine %s loaded in %.2fs", name, time.perf_counter() - started)
                self.engines[name] = engine

    def close(self) -> None:
        for engine in self.engines.values():
            engine.close()

    # ------------------------------------------------------------------ voices

    def _ordered_engines(self, preferred: str = "") -> list[Engine]:
        order = [preferred] if preferred else []
        order += [self.settings.tts_default_engine, *self.settings.tts_engines]
        return [self.engines[n] for n in dict.fromkeys(order) if n in self.engines]

    def _engine(self, name: str) -> Engine:
        key = name.strip().lower()
        if key in self.engines:
            return self.engines[key]
        enabled = ", ".join(self.engines) or "none"
        if key in KNOWN_ENGINES:
            raise NotFound(
                f"engine {key!r} is not enabled on this server (enabled: {enabled}); "
                "add it to SORIFLOW_TTS_ENGINES"
            )
        raise NotFound(f"unknown engine {name!r}; enabled engines: {enabled}")

    def voices(self, language: str = "", engine: str = "") -> list[VoiceInfo]:
        """Voices of the enabled engines (or one), for a language (or all), by engine then name."""
        engines = [self._engine(engine)] if engine.strip() else self._ordered_engines()
        rank = {e.name: i for i, e in enumerate(self._ordered_engines())}
        found = [v for e in engines for v in voices_for_language(e.voices(), language)]
        return sorted(found, key=lambda v: (rank.get(v.engine, 99), v.name))

    def _voice_list(self, language: str, engine: str, name: str = "") -> str:
        """Voice names for an error message: the language's, else those of the language the unknown
        name starts with ("ko-KR-Wavenet-X" lists Korean voices), else all."""
        guess = re.split(r"[-_+]", name, maxsplit=1)[0] if name else ""
        names = (
            ([v.name for v in self.voices(language, engine)] if language else [])
            or (
                [v.name for v in self.voices(guess, engine)]
                if guess.isalpha() and len(guess) in (2, 3)
                else []
            )
            or [v.name for v in self.voices("", engine)]
        )
        shown = ", ".join(names[:MAX_LISTED_VOICES])
        if len(names) > MAX_LISTED_VOICES:
            shown += f", ... ({len(names) - MAX_LISTED_VOICES} more: call ListVoices)"
        return shown or "none"

    def resolve_voice(self, selection: tts_pb2.VoiceSelection) -> tuple[Engine, VoiceInfo]:
        """The engine and voice a request's VoiceSelection means (see VoiceSelection in tts.proto)."""
        engine_name = selection.engine.strip().lower()
        named = [self._engine(engine_name)] if engine_name else self._ordered_engines()
        language = selection.language_code.strip()
        if selection.name.strip():
            name = selection.name.strip()
            for engine in named:
                voice = engine.find_voice(name)
                if voice is None:
                    continue
                if language and voice_score(language, voice) == 0:
                    raise InvalidArgument(
                        f"voice {voice.name!r} speaks {', '.join(voice.language_codes)}, not "
                        f"{language!r}: leave language_code empty or pick a {language} voice"
                    )
                return engine, voice
            where = f" in engine {engine_name}" if engine_name else ""
            what = f" for {language}" if language else ""
            raise NotFound(
                f"unknown voice {name!r}{where}; voices{what}: "
                f"{self._voice_list(language, engine_name, name)}"
            )
        language = language or self.settings.tts_default_language
        for engine in named:
            matching = voices_for_language(engine.voices(), language)
            if matching:
                return engine, matching[0]
        where = f"engine {engine_name}" if engine_name else "the enabled engines"
        langs = sorted({code for e in named for v in e.voices() for code in v.language_codes})
        raise NotFound(
            f"{where} have no voice for language {language!r}; languages: {', '.join(langs[:60])}"
            + (" ..." if len(langs) > 60 else "")
        )

    # ------------------------------------------------------------------ planning

    def _source(self, request: tts_pb2.SynthesizeRequest) -> tuple[str, bool]:
        kind = request.WhichOneof("input")
        if kind is None:
            raise InvalidArgument("the request has no input: set text, ssml or template")
        if kind == "template":
            if not request.template.template.strip():
                raise InvalidArgument("template.template is empty")
            source, is_ssml = render(request.template.template, dict(request.template.variables)), False
        else:
            source, is_ssml = (request.ssml, True) if kind == "ssml" else (request.text, False)
        limit = self.settings.tts_max_text_chars
        if len(source) > limit:
            raise InvalidArgument(
                f"the {kind} is {len(source)} characters, over this server's limit of {limit}: "
                "send it in several requests (or raise SORIFLOW_TTS_MAX_TEXT_CHARS)"
            )
        if not source.strip():
            raise InvalidArgument(f"the {kind} is empty: there is nothing to say")
        return clean_text(source, f"the {kind}"), is_ssml

    def plan(self, request: tts_pb2.SynthesizeRequest) -> Plan:
        """Validates the request and decides everything; raises the typed errors (no audio yet)."""
        source, is_ssml = self._source(request)
        root = parse_ssml(source) if is_ssml else None
        config = request.audio_config
        prosody = Prosody.from_request(config.speaking_rate, config.pitch_semitones, config.volume_gain_db)
        engine, voice = self.resolve_voice(request.voice)
        output = enc.resolve_output(config.encoding, config.sample_rate_hz, voice.natural_sample_rate_hz)

        caps = engine.capabilities
        piece_limit = caps.max_input_bytes // 2  # room for markup and lexicon substitutions
        document = (
            Document.from_ssml(root, max_piece_bytes=piece_limit)
            if root is not None
            else Document.from_text(source, max_piece_bytes=piece_limit)
        )
        if not document.has_text():
            raise InvalidArgument("the input has no words to say" + (" (only markup)" if is_ssml else ""))
        language = request.voice.language_code or voice.language_codes[0]
        lexicon = None if request.disable_lexicon else self.lexicon.for_language(language)
        as_ssml = caps.ssml and (
            document.is_ssml or (caps.lexicon_mode == "sub" and document.lexicon_matches(lexicon))
        )
        sentences = document.render(ssml=as_ssml, lexicon=lexicon, lexicon_mode=caps.lexicon_mode)
        check_sizes(sentences, caps.max_input_bytes, engine.name)

        low, high = caps.rate_range
        native_rate = min(max(prosody.speaking_rate, low), high)
        native = SynthesisOptions(
            speaking_rate=native_rate,
            pitch_semitones=prosody.pitch_semitones if caps.pitch else 0.0,
            volume_gain_db=prosody.volume_gain_db if caps.volume else 0.0,
            output_rate_hz=output.sample_rate_hz,
        )
        return Plan(
            engine=engine,
            voice=voice,
            output=output,
            prosody=prosody,
            native=native,
            tempo=prosody.speaking_rate / native_rate,
            semitones=0.0 if caps.pitch else prosody.pitch_semitones,
            gain_db=0.0 if caps.volume else prosody.volume_gain_db,
            sentences=sentences,
            pause_ms=self.settings.tts_sentence_pause_ms,
        )

    # ------------------------------------------------------------------ audio

    def _call(self, plan: Plan, text: str, ssml: bool, cancel: threading.Event) -> tuple[FloatArray, int]:
        engine = plan.engine
        started = time.perf_counter()
        try:
            audio = engine.synthesize(text, ssml=ssml, voice=plan.voice, options=plan.native, cancel=cancel)
        except EngineFailure as exc:
            ENGINE_FAILURES.labels(engine.name).inc()
            log.warning("engine %s failed (%s); resetting it", engine.name, exc.message)
            engine.reset()
            raise
        except SoriflowError:
            raise
        except Exception as exc:  # an engine bug: the engine is suspect, the request gets UNAVAILABLE
            ENGINE_FAILURES.labels(engine.name).inc()
            log.exception("engine %s raised; resetting it", engine.name)
            engine.reset()
            raise EngineFailure(f"{engine.name} failed: {type(exc).__name__}: {exc}") from exc
        ENGINE_CALLS.labels(engine.name).observe(time.perf_counter() - started)
        CHARACTERS.labels(engine.name).inc(len(text))
        samples = np.asarray(audio.samples, dtype=np.float32)
        if not np.all(np.isfinite(samples)):
            ENGINE_FAILURES.labels(engine.name).inc()
            engine.reset()
            raise EngineFailure(f"{engine.name} produced invalid samples (NaN or infinity)")
        return samples, audio.sample_rate

    def chunk_samples(self, plan: Plan, chunk: Chunk, cancel: threading.Event) -> tuple[FloatArray, int]:
        """The engine's audio of one chunk (breaks as silence), at the engine's rate."""
        pieces: list[FloatArray] = []
        rate = 0
        pending_pauses: list[int] = []
        for part in chunk.parts:
            if isinstance(part, Pause):
                pending_pauses.append(part.ms)
                continue
            text = f"<speak>{part}</speak>" if chunk.ssml else part
            samples, got_rate = self._call(plan, text, chunk.ssml, cancel)
            if rate and got_rate != rate:
                samples = resample(samples, got_rate, rate)
            rate = rate or got_rate
            for ms in pending_pauses:
                pieces.append(np.zeros(round(rate * ms / 1000), dtype=np.float32))
            pending_pauses.clear()
            pieces.append(samples)
        rate = rate or plan.voice.natural_sample_rate_hz
        for ms in pending_pauses:
            pieces.append(np.zeros(round(rate * ms / 1000), dtype=np.float32))
        return (np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)), rate

    def finish(self, plan: Plan, samples: FloatArray, rate: int) -> FloatArray:
        """Prosody the engine could not do, then resampling to the output rate."""
        samples = change_tempo_and_pitch(samples, rate, tempo=plan.tempo, semitones=plan.semitones)
        samples = apply_gain(samples, plan.gain_db)
        return resample(samples, rate, plan.output.sample_rate_hz)

    def silence(self, plan: Plan) -> FloatArray:
        return np.zeros(round(plan.output.sample_rate_hz * plan.pause_ms / 1000), dtype=np.float32)

    def synthesize(
        self,
        request: tts_pb2.SynthesizeRequest,
        cancel: threading.Event | None = None,
        plan: Plan | None = None,
    ) -> tts_pb2.SynthesizeResponse:
        """The whole text as one audio file (blocking)."""
        started = time.perf_counter()
        cancel = cancel or threading.Event()
        plan = plan or self.plan(request)
        chunks = plan.chunks(streaming=False)
        pieces: list[FloatArray] = []
        rate = 0
        for chunk in chunks:
            samples, got_rate = self.chunk_samples(plan, chunk, cancel)
            if rate and got_rate != rate:
                samples = resample(samples, got_rate, rate)
            rate = rate or got_rate
            if pieces:
                pieces.append(np.zeros(round(rate * plan.pause_ms / 1000), dtype=np.float32))
            pieces.append(samples)
        audio = self.finish(plan, np.concatenate(pieces), rate)
        if audio.size == 0:
            raise InvalidArgument(
                f"{plan.engine.name} produced no audio for this text: nothing in it is pronounceable with "
                f"voice {plan.voice.name}; check the language and the voice"
            )
        content = enc.encode_file(audio, plan.output)
        limit = self.settings.max_message_bytes - 64 * 1024  # room for the response's other fields
        if len(content) > limit:
            raise ResourceExhausted(
                f"the audio is {len(content) / MIB:.1f} MiB, over the {limit / MIB:.1f} MiB message limit: "
                "use SynthesizeStream, a compressed encoding (MP3, OGG_OPUS), a lower rate or shorter text"
            )
        AUDIO_SECONDS.labels(plan.engine.name).inc(audio.size / plan.output.sample_rate_hz)
        return tts_pb2.SynthesizeResponse(
            audio_content=content,
            encoding=plan.output.encoding,  # type: ignore[arg-type]
            sample_rate_hz=plan.output.sample_rate_hz,
            duration_ms=enc.duration_ms(audio.size, plan.output.sample_rate_hz),
            voice=plan.voice.name,
            engine=plan.engine.name,
            sentence_count=len(plan.sentences),
            mime_type=plan.output.mime_type,
            processing_time_ms=round((time.perf_counter() - started) * 1000),
            prepared_text="\n".join(c.prepared() for c in chunks),
        )

    def stream_chunk(
        self, plan: Plan, chunk: Chunk, cancel: threading.Event, *, offset_frames: int, last: bool
    ) -> tuple[tts_pb2.SynthesizeStreamResponse, int]:
        """One sentence of a stream (with the pause after it unless last) and its length in frames."""
        samples, rate = self.chunk_samples(plan, chunk, cancel)
        audio = self.finish(plan, samples, rate)
        if not last:
            audio = np.concatenate([audio, self.silence(plan)])
        AUDIO_SECONDS.labels(plan.engine.name).inc(audio.size / plan.output.sample_rate_hz)
        out_rate = plan.output.sample_rate_hz
        response = tts_pb2.SynthesizeStreamResponse(
            audio_content=enc.encode_chunk(audio, plan.output),
            encoding=plan.output.encoding,  # type: ignore[arg-type]
            sample_rate_hz=out_rate,
            sentence_index=chunk.index,
            text=chunk.written,
            offset_ms=enc.duration_ms(offset_frames, out_rate),
            duration_ms=enc.duration_ms(audio.size, out_rate),
            is_last=last,
            prepared_text=chunk.prepared(),
        )
        return response, audio.size

    def stream(
        self, request: tts_pb2.SynthesizeRequest, cancel: threading.Event | None = None
    ) -> Iterator[tts_pb2.SynthesizeStreamResponse]:
        """Sentence by sentence (blocking generator; the servicer drives the same steps asynchronously)."""
        cancel = cancel or threading.Event()
        plan = self.plan(request)
        chunks = plan.chunks(streaming=True)
        offset = 0
        for chunk in chunks:
            response, frames = self.stream_chunk(
                plan, chunk, cancel, offset_frames=offset, last=chunk.index == len(chunks) - 1
            )
            offset += frames
            yield response
