"""`soriflow demo`: the real job, end to end, on the local stack.

It makes its inputs with the TTS service (a scripted insurance call with the
customer and the agent on separate channels, the same call with the customer
only mumbling, a learner and a reference reading, a voice note), uploads them
to the input bucket with boto3 like a real producer, and follows the jobs the
S3 events start until they end. Every output is downloaded into the output
folder and checked; the exit code says whether every job did its job. The call
that was understood is read back to the caller; the mumbled one must end with
the safe reply and `needs_review`, never with what the model made of it.

`--language ko` runs the Korean call center instead: the two calls in Korean
(two espeak-ng Korean voices), uploaded under `connect/ko/` where the
call-summary pipeline pins Korean, on the multilingual base STT model.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from soriflow.audio import decode_audio, encode_wav_pcm16
from soriflow.client import GatewayClient, open_channel
from soriflow.registry import hook
from soriflow.stack import LocalStack
from soriflow.v1 import audio_pb2, gateway_pb2, tts_pb2, tts_pb2_grpc

CALL_SCRIPT = [  # (channel, text): Amazon Connect records the customer left (0) and the agent right (1)
    (1, "Thank you for calling Soriflow Insurance. How can I help you today?"),
    (0, "Hi. I had a car accident this morning, and I want to check whether my insurance covers the repair."),
    (1, "I am sorry to hear that. Let me check your policy."),
    (0, "Thank you. Another car hit my rear bumper at a traffic light."),
]
KOREAN_CALL_SCRIPT = [
    (1, "안녕하세요, 소리플로우 보험입니다. 무엇을 도와드릴까요?"),
    (0, "어제 자동차 사고가 났는데요. 자차 보험으로 수리비 처리가 되는지 궁금합니다."),
    (1, "네, 고객님. 확인해 드리겠습니다."),
]
#: What the call-summary pipeline says instead of reading back a call it did not understand.
SAFE_REPLIES = {
    "en": "Sorry, I could not catch your request. Could you tell me once more?",
    "ko": "죄송합니다. 문의 내용을 한 번 더 말씀해 주시겠어요?",
}
READ_BACK = {"en": "Let me confirm your request: ", "ko": "문의하신 내용이 "}
SENTENCE = "I went to the toy store with my little sister."
LEARNER_READING = "I went to the store with my little sister."  # leaves out "toy"
VOICE_NOTE = (
    "Welcome to Soriflow. This voice note is turned into subtitles. Every line gets its start and end time."
)
FINAL = {
    gateway_pb2.JOB_STATE_SUCCEEDED,
    gateway_pb2.JOB_STATE_PARTIAL,
    gateway_pb2.JOB_STATE_FAILED,
    gateway_pb2.JOB_STATE_CANCELLED,
}


@dataclass
class DemoInput:
    """An upload: what it is, and the job it starts (none for a pronunciation reference)."""

    key: str
    data: bytes
    metadata: dict[str, str] = field(default_factory=dict)
    name: str = ""  # the job's name in the report and its output folder; empty: starts no job
    title: str = ""
    pipeline: str = ""
    #: For calls: whether the job must end needing review (the caller was not understood).
    expect_review: bool = False


@dataclass
class DemoJob:
    title: str
    pipeline: str
    uri: str
    name: str = ""
    expect_review: bool = False
    job: Any = None
    stages: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.name = self.name or self.pipeline


def mumble(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Speech as heard through a wall: a moving average keeps only the low hum (no consonants)."""
    width = max(1, sample_rate // 200)  # ~5 ms boxcars, three passes: little above 150 Hz remains
    smooth = np.asarray(samples, dtype=np.float64)
    for _ in range(3):
        smooth = np.convolve(smooth, np.ones(width) / width, mode="same")
    peak = float(np.abs(smooth).max()) or 1.0
    return (smooth / peak * 0.3).astype(np.float32)


class Demo:
    def __init__(self, stack: LocalStack, output_dir: Path, console: Console, language: str = "en") -> None:
        self.stack = stack
        self.output_dir = output_dir
        self.console = console
        self.language = language
        self.s3 = stack.client("s3")
        self.bucket = stack.config.input_bucket

    async def _speak(
        self,
        stub: Any,
        text: str,
        voice: str,
        *,
        rate: float = 1.0,
        sample_rate: int = 16000,
        pitch: float = 0.0,
        language: str = "en-US",
    ) -> np.ndarray:
        request = tts_pb2.SynthesizeRequest(
            text=text,
            voice=tts_pb2.VoiceSelection(name=voice, language_code=language),
            audio_config=tts_pb2.AudioOutputConfig(
                encoding=audio_pb2.AUDIO_ENCODING_LINEAR16,
                sample_rate_hz=sample_rate,
                speaking_rate=rate,
                pitch_semitones=pitch,
            ),
        )
        response = await stub.Synthesize(request, timeout=120)
        return decode_audio(response.audio_content, target_rate=sample_rate).samples

    async def _voice(self, stub: Any) -> str:
        """The neural English voice if the TTS service has it, else its first English voice."""
        voices = (await stub.ListVoices(tts_pb2.ListVoicesRequest(language_code="en-US"), timeout=30)).voices
        piper = [v.name for v in voices if v.engine == "piper"]
        return piper[0] if piper else (voices[0].name if voices else "")

    async def _calls(
        self, stub: Any, script: list[tuple[int, str]], voices: tuple[str, str], pitches: tuple[float, float]
    ) -> tuple[bytes, bytes]:
        """The call as Amazon Connect records it (8 kHz stereo, customer left, agent right), and the
        same call with the customer only mumbling."""
        rate = 8000
        language = "ko-KR" if self.language == "ko" else "en-US"
        left: list[np.ndarray] = []
        mumbled: list[np.ndarray] = []
        right: list[np.ndarray] = []
        for channel_index, text in script:
            speech = await self._speak(
                stub,
                text,
                voices[channel_index],
                sample_rate=rate,
                pitch=pitches[channel_index],
                language=language,
            )
            turn = np.concatenate([speech, np.zeros(int(0.5 * rate), dtype=np.float32)])
            quiet = np.zeros_like(turn)
            left.append(turn if channel_index == 0 else quiet)
            mumbled.append(mumble(turn, rate) if channel_index == 0 else quiet)
            right.append(quiet if channel_index == 0 else turn)
        agent = np.concatenate(right)
        return (
            encode_wav_pcm16(np.stack([np.concatenate(left), agent]), rate),
            encode_wav_pcm16(np.stack([np.concatenate(mumbled), agent]), rate),
        )

    async def make_inputs(self) -> list[DemoInput]:
        """The uploads, all synthesized by the running TTS service."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        call_title = "stereo call -> transcript, summary, reply read back"
        unclear_title = "the customer only mumbles -> safe reply, needs review"
        async with open_channel(self.stack.config.address("tts")) as channel:
            stub = tts_pb2_grpc.TextToSpeechServiceStub(channel)
            if self.language == "ko":
                # Two espeak-ng Korean voices; connect/ko/ pins Korean (recordings carry no metadata).
                call, unclear = await self._calls(stub, KOREAN_CALL_SCRIPT, ("ko", "ko+f3"), (0.0, 0.0))
                return [
                    DemoInput(
                        f"connect/ko/demo/{stamp}/call.wav", call, {}, "call", call_title, "call-summary"
                    ),
                    DemoInput(
                        f"connect/ko/demo/{stamp}/unclear-call.wav",
                        unclear,
                        {},
                        "unclear-call",
                        unclear_title,
                        "call-summary",
                        expect_review=True,
                    ),
                ]
            native = await self._voice(stub)
            # Two people: the neural voice for the customer, shifted up for the agent.
            call, unclear = await self._calls(stub, CALL_SCRIPT, (native, native), (0.0, 3.0))
            reference = encode_wav_pcm16(await self._speak(stub, SENTENCE, native), 16000)
            # The learner: a lower, slower voice that leaves out a word. (espeak-ng's robotic voice
            # is a poor stand-in for a person: tiny.en mishears it, so it would score as mispronounced.)
            learner_audio = await self._speak(stub, LEARNER_READING, native, rate=0.8, pitch=-4.0)
            learner = encode_wav_pcm16(learner_audio, 16000)
            note = encode_wav_pcm16(await self._speak(stub, VOICE_NOTE, native), 16000)
        # The reference first: the learner's job looks for it as soon as the learner upload lands.
        # The inquiry line comes from the summarizer's default for it, the faithful engine: the
        # caller's own words compressed, never an invented fact (a model engine's line is checked
        # against the call and replaced when it invents).
        return [
            DemoInput("reference/demo/level_1/toy-store/audio_line_1.wav", reference),
            DemoInput(f"connect/demo/{stamp}/call.wav", call, {}, "call", call_title, "call-summary"),
            DemoInput(
                f"connect/demo/{stamp}/unclear-call.wav",
                unclear,
                {},
                "unclear-call",
                unclear_title,
                "call-summary",
                expect_review=True,
            ),
            DemoInput(
                f"users/demo-learner-{stamp}/demo/level_1/toy-store/audio_line_1.wav",
                learner,
                {"reference-text": SENTENCE},
                "pronunciation",
                "learner vs reference -> pronunciation score",
                "pronunciation",
            ),
            DemoInput(
                f"transcribe/demo/{stamp}/voice-note.wav",
                note,
                {},
                "transcribe",
                "voice note -> subtitles",
                "transcribe",
            ),
        ]

    def upload(self, inputs: list[DemoInput]) -> list[DemoJob]:
        jobs = []
        for item in inputs:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=item.key,
                Body=item.data,
                Metadata=item.metadata,
                ContentType="audio/wav",
            )
            uri = f"s3://{self.bucket}/{item.key}"
            self.console.print(f"uploaded {uri} ({len(item.data) / 1024:.0f} KiB)")
            if item.name:
                jobs.append(DemoJob(item.title, item.pipeline, uri, item.name, item.expect_review))
        return jobs

    async def follow(self, jobs: list[DemoJob], timeout_s: float) -> None:
        async with GatewayClient(self.stack.config.address("gateway")) as client:
            with Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TimeElapsedColumn(),
                console=self.console,
            ) as progress:

                async def one(item: DemoJob) -> None:
                    task = progress.add_task(f"{item.name}: waiting for the S3 event", total=None)
                    while item.job is None:  # the gateway creates the job when the SQS message arrives
                        page = await client.list(source_uri_prefix=item.uri, page_size=1)
                        if page.jobs:
                            item.job = page.jobs[0]
                        else:
                            await asyncio.sleep(0.5)
                    async for response in client.watch(item.job.job_id):
                        if response.HasField("job"):
                            item.job = response.job
                            break
                        event = response.event
                        if event.stage:
                            state = gateway_pb2.StageState.Name(event.stage_state).removeprefix(
                                "STAGE_STATE_"
                            )
                            item.stages[event.stage] = state
                        total = max(1, len(item.stages))
                        done = sum(s in ("SUCCEEDED", "SKIPPED", "FAILED") for s in item.stages.values())
                        stages = " ".join(f"{n}:{s.lower()}" for n, s in item.stages.items())
                        progress.update(
                            task, total=total, completed=done, description=f"{item.name}: {stages}"
                        )
                    final = gateway_pb2.JobState.Name(item.job.state).removeprefix("JOB_STATE_")
                    progress.update(task, total=1, completed=1, description=f"{item.name}: {final.lower()}")

                await asyncio.wait_for(asyncio.gather(*(one(j) for j in jobs)), timeout_s)

    def download(self, item: DemoJob) -> dict[str, Path]:
        folder = self.output_dir / item.name
        folder.mkdir(parents=True, exist_ok=True)
        files = {}
        for output in item.job.outputs:
            bucket, _, key = output.uri[5:].partition("/")
            path = folder / output.name
            path.write_bytes(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            files[output.name] = path
        return files

    def report(self, item: DemoJob) -> None:
        self.console.rule(f"{item.name}: {item.title}")
        state = gateway_pb2.JobState.Name(item.job.state).removeprefix("JOB_STATE_")
        self.console.print(f"job {item.job.job_id} {state} for {item.uri}")
        if item.job.state != gateway_pb2.JOB_STATE_SUCCEEDED:
            # PARTIAL means an optional stage failed: the demo exists to show every stage working.
            item.problems.append(f"job {state}: {item.job.error or 'an optional stage failed'}")
            if item.job.state != gateway_pb2.JOB_STATE_PARTIAL:
                return
        files = self.download(item)
        result = item.job.result
        if item.pipeline == "call-summary":
            self._check_call(item, result, files)
        elif item.pipeline == "pronunciation":
            self._check_pronunciation(item, result, files)
        else:
            self._check_transcribe(item, files)
        for output in item.job.outputs:
            self.console.print(f"  {output.uri}  ->  {files.get(output.name, '')}")

    def _check_call(self, item: DemoJob, result: Any, files: dict[str, Path]) -> None:
        for segment in result.transcript.segments:
            self.console.print(
                f"  [{segment.start_ms / 1000:5.1f}s] {segment.speaker:>8}: {segment.text.strip()}"
            )
        speakers = {w.speaker for w in result.transcript.words}
        if speakers != {"customer", "agent"} and not result.needs_review:
            item.problems.append(f"expected words from customer and agent, got {sorted(speakers)}")
        language = self.language
        if result.needs_review:
            self.console.print("  [bold]needs review:[/bold]")
            for reason in result.review_reasons:
                self.console.print(f"    {reason.message} (gate {reason.gate})")
        else:
            self.console.print(f"  [bold]summary:[/bold] {result.summary.summary}")
        if item.expect_review and not result.needs_review:
            item.problems.append("a call that was not understood was not flagged for review")
        if result.needs_review:
            # Never read back what was not understood: the safe reply, in the call's language.
            if result.reply_text != SAFE_REPLIES[language]:
                item.problems.append(f"needs review, but the reply is {result.reply_text!r}")
            if not item.expect_review:
                note = (
                    "the bundled base model does not understand espeak-ng's Korean voices, so this "
                    "call is asked again too; a Korean-capable STT model reads it back"
                    if language == "ko"
                    else "a call that should have been understood was flagged for review"
                )
                self.console.print(f"  [yellow]note:[/yellow] {note}")
                if language != "ko":
                    item.problems.append(note)
        else:
            if not result.summary.summary.strip():
                item.problems.append("the summary is empty")
            elif "\n" in result.summary.summary.strip():
                item.problems.append("the inquiry summary is not one line")
            if not result.reply_text.startswith(READ_BACK[language]):
                item.problems.append(f"the reply does not read the summary back: {result.reply_text!r}")
        self.console.print(f"  [bold]reply:[/bold] {result.reply_text}")
        reply = files.get("reply.wav")
        header = reply.read_bytes()[:44] if reply else b""
        if not (
            header[:4] == b"RIFF"
            and int.from_bytes(header[20:22], "little") == 7
            and int.from_bytes(header[22:24], "little") == 1
            and int.from_bytes(header[24:28], "little") == 8000
        ):
            item.problems.append("reply.wav is not 8 kHz mono mu-law WAV")

    def _check_pronunciation(self, item: DemoJob, result: Any, files: dict[str, Path]) -> None:
        score = result.score
        # Scoring's own report and plot, reached through the registry: the runtime imports no service.
        print_score, plot_contours = hook("scoring", "print_result"), hook("scoring", "plot_result")
        if print_score is not None:
            print_score(score, self.console, title=f"'{score.reference_text}'")
        else:
            self.console.print(f"  overall score {score.overall_score:.0f}")
        if "score.json" not in files:
            item.problems.append("score.json missing")
        if plot_contours is not None:
            plot = self.output_dir / item.pipeline / "pitch.png"
            plot_contours(score, plot, title=score.reference_text)
            self.console.print(f"  pitch contours: {plot}")

    def _check_transcribe(self, item: DemoJob, files: dict[str, Path]) -> None:
        srt = files.get("subtitles.srt")
        text = srt.read_text() if srt else ""
        self.console.print(text)
        if "-->" not in text:
            item.problems.append("subtitles.srt has no cues")


async def run_jobs(demo: Demo, timeout_s: float = 600) -> list[DemoJob]:
    """Makes the inputs, uploads them and follows the jobs until they end."""
    demo.console.print("making the demo inputs with the TTS service ...")
    inputs = await demo.make_inputs()
    jobs = demo.upload(inputs)
    await demo.follow(jobs, timeout_s)
    return jobs


def report_all(demo: Demo, jobs: list[DemoJob]) -> int:
    """Downloads, shows and checks every job's outputs; 0 when all of them did their job."""
    for item in jobs:
        demo.report(item)
    problems = [f"{j.name}: {p}" for j in jobs for p in j.problems]
    output_dir = demo.output_dir.resolve()
    summary = {
        "language": demo.language,
        "jobs": {j.name: j.job.job_id for j in jobs},
        "states": {j.name: gateway_pb2.JobState.Name(j.job.state) for j in jobs},
        "needs_review": {j.name: bool(j.job.needs_review) for j in jobs},
        "replies": {j.name: j.job.result.reply_text for j in jobs if j.pipeline == "call-summary"},
        "output_dir": str(output_dir),
        "problems": problems,
    }
    (output_dir / "demo.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    demo.console.rule()
    if problems:
        for problem in problems:
            demo.console.print(f"[red]FAILED[/red] {problem}")
        return 1
    demo.console.print(f"[green]demo finished[/green]: {len(jobs)} jobs succeeded; outputs in {output_dir}/")
    return 0
