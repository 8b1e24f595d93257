"""`soriflow demo`: the real job, end to end, on the local stack.

It makes its inputs with the TTS service (a scripted insurance call with the
customer and the agent on separate channels, a learner and a reference
reading, a voice note), uploads them to the input bucket with boto3 like a
real producer, and follows the three jobs the S3 events start until they end.
Every output is downloaded into the output folder and checked; the exit code
says whether all three jobs did their job.
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
class DemoJob:
    title: str
    pipeline: str
    uri: str
    job: Any = None
    stages: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


class Demo:
    def __init__(self, stack: LocalStack, output_dir: Path, console: Console) -> None:
        self.stack = stack
        self.output_dir = output_dir
        self.console = console
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
    ) -> np.ndarray:
        request = tts_pb2.SynthesizeRequest(
            text=text,
            voice=tts_pb2.VoiceSelection(name=voice, language_code="en-US"),
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

    async def make_inputs(self) -> dict[str, tuple[bytes, dict[str, str]]]:
        """key -> (wav bytes, metadata), all synthesized by the running TTS service."""
        async with open_channel(self.stack.config.address("tts")) as channel:
            stub = tts_pb2_grpc.TextToSpeechServiceStub(channel)
            native = await self._voice(stub)
            # The call: 8 kHz stereo, like Amazon Connect's recordings; turns alternate between channels.
            rate = 8000
            left: list[np.ndarray] = []
            right: list[np.ndarray] = []
            for channel_index, text in CALL_SCRIPT:
                # Two people: the neural voice for the customer, shifted up for the agent.
                pitch = 0.0 if channel_index == 0 else 3.0
                speech = await self._speak(stub, text, native, sample_rate=rate, pitch=pitch)
                turn = np.concatenate([speech, np.zeros(int(0.5 * rate), dtype=np.float32)])
                quiet = np.zeros_like(turn)
                left.append(turn if channel_index == 0 else quiet)
                right.append(quiet if channel_index == 0 else turn)
            call = encode_wav_pcm16(np.stack([np.concatenate(left), np.concatenate(right)]), rate)
            reference = encode_wav_pcm16(await self._speak(stub, SENTENCE, native), 16000)
            # The learner: a lower, slower voice that leaves out a word. (espeak-ng's robotic voice
            # is a poor stand-in for a person: tiny.en mishears it, so it would score as mispronounced.)
            learner_audio = await self._speak(stub, LEARNER_READING, native, rate=0.8, pitch=-4.0)
            learner = encode_wav_pcm16(learner_audio, 16000)
            note = encode_wav_pcm16(await self._speak(stub, VOICE_NOTE, native), 16000)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return {
            # The bundled 135M LM proves the abstractive path but invents details; what is read back to a
            # caller must be what they said, so the demo asks for the extractive engine (object metadata
            # becomes a pipeline parameter). Mount a fine-tuned model for abstractive inquiry lines.
            f"connect/demo/{stamp}/call.wav": (call, {"summary-engine": "extractive"}),
            "reference/demo/level_1/toy-store/audio_line_1.wav": (reference, {}),
            f"users/demo-learner-{stamp}/demo/level_1/toy-store/audio_line_1.wav": (
                learner,
                {"reference-text": SENTENCE},
            ),
            f"transcribe/demo/{stamp}/voice-note.wav": (note, {}),
        }

    def upload(self, inputs: dict[str, tuple[bytes, dict[str, str]]]) -> list[DemoJob]:
        jobs = []
        # The reference first: the learner's job looks for it as soon as the learner upload lands.
        for key in sorted(inputs, key=lambda k: not k.startswith("reference/")):
            data, metadata = inputs[key]
            self.s3.put_object(
                Bucket=self.bucket, Key=key, Body=data, Metadata=metadata, ContentType="audio/wav"
            )
            uri = f"s3://{self.bucket}/{key}"
            self.console.print(f"uploaded {uri} ({len(data) / 1024:.0f} KiB)")
            if key.startswith("connect/"):
                jobs.append(DemoJob("stereo call -> transcript, summary, reply", "call-summary", uri))
            elif key.startswith("users/"):
                jobs.append(DemoJob("learner vs reference -> pronunciation score", "pronunciation", uri))
            elif key.startswith("transcribe/"):
                jobs.append(DemoJob("voice note -> subtitles", "transcribe", uri))
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
                    task = progress.add_task(f"{item.pipeline}: waiting for the S3 event", total=None)
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
                            task, total=total, completed=done, description=f"{item.pipeline}: {stages}"
                        )
                    final = gateway_pb2.JobState.Name(item.job.state).removeprefix("JOB_STATE_")
                    progress.update(
                        task, total=1, completed=1, description=f"{item.pipeline}: {final.lower()}"
                    )

                await asyncio.wait_for(asyncio.gather(*(one(j) for j in jobs)), timeout_s)

    def download(self, item: DemoJob) -> dict[str, Path]:
        folder = self.output_dir / item.pipeline
        folder.mkdir(parents=True, exist_ok=True)
        files = {}
        for output in item.job.outputs:
            bucket, _, key = output.uri[5:].partition("/")
            path = folder / output.name
            path.write_bytes(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            files[output.name] = path
        return files

    def report(self, item: DemoJob) -> None:
        self.console.rule(f"{item.pipeline}: {item.title}")
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
        if speakers != {"customer", "agent"}:
            item.problems.append(f"expected words from customer and agent, got {sorted(speakers)}")
        self.console.print(f"  [bold]summary:[/bold] {result.summary.summary}")
        if not result.summary.summary.strip():
            item.problems.append("the summary is empty")
        elif "\n" in result.summary.summary.strip():
            item.problems.append("the inquiry summary is not one line")
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
    """Downloads, shows and checks every job's outputs; 0 when all three did their job."""
    for item in jobs:
        demo.report(item)
    problems = [f"{j.pipeline}: {p}" for j in jobs for p in j.problems]
    output_dir = demo.output_dir.resolve()
    summary = {
        "jobs": {j.pipeline: j.job.job_id for j in jobs},
        "states": {j.pipeline: gateway_pb2.JobState.Name(j.job.state) for j in jobs},
        "output_dir": str(output_dir),
        "problems": problems,
    }
    (output_dir / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    demo.console.rule()
    if problems:
        for problem in problems:
            demo.console.print(f"[red]FAILED[/red] {problem}")
        return 1
    demo.console.print(f"[green]demo finished[/green]: 3 jobs succeeded; outputs in {output_dir}/")
    return 0
