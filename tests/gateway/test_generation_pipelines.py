"""The generation pipelines end to end, and schedules fired by real gateway replicas.

Real parts on loopback: moto (S3, SQS, SNS), the STT service (tiny.en), the TTS
service, the summarizer with the bundled SmolLM2 (llama.cpp when installed,
else transformers: what `soriflow up` runs), the local image stand-in speaking
OpenAI's Images API, PostgreSQL for replicas that share a job store.
Schedules use six-field cron expressions (seconds last) so ticks come within a
test's time; the policies on a clock the test sets are in `test_schedules.py`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import itertools
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from soriflow.client import GatewayClient
from soriflow.gateway.generation import clip
from soriflow.gateway.images.local import LocalImageServer
from soriflow.gateway.pipelines import PipelineRegistry
from soriflow.gateway.schedules import SCHEDULE_KEY, TICK_KEY
from soriflow.gateway.store import JobRecord, JobStore
from soriflow.server import ThreadedServer
from soriflow.stack import generation_engine
from soriflow.v1 import gateway_pb2
from tests.gateway.conftest import AwsWorld, gateway_settings, service_thread
from tests.gateway.speech import silence, speak, wav
from tests.gateway.test_gateway import finished_jobs, store_of, wait_until

pytestmark = pytest.mark.slow

IMAGE_KEY = "sk-soriflow-test"
#: Prompts with this word break the stand-in's "content policy", as a real provider's would.
BLOCKED = "forbidden"


@pytest.fixture(scope="module")
def image_server() -> Iterator[LocalImageServer]:
    with LocalImageServer(api_key=IMAGE_KEY, blocked_words=(BLOCKED,)) as server:
        yield server


@pytest.fixture(scope="module")
def generation_summarizer(moto_endpoint: str) -> Iterator[ThreadedServer]:
    """The summarizer as `soriflow up` runs it for generate stages: the bundled SmolLM2."""
    from soriflow.summarizer.service import create_service
    from soriflow.summarizer.settings import Settings
    from tests.summarizer.conftest import MODEL_CACHE

    settings = Settings(
        host="127.0.0.1",
        port=0,
        metrics_port=None,
        log_format="text",
        s3_endpoint_url=moto_endpoint,
        summarizer_engine=generation_engine(),
        summarizer_device="cpu",
        cache_dir=MODEL_CACHE,  # the transformers copy of the GGUF, kept across sessions
    )
    server = service_thread("summarizer", lambda: create_service(settings))
    yield server
    server.stop()


def image_settings(server: LocalImageServer) -> dict[str, Any]:
    return {
        "image_engine": "openai",
        "image_openai_base_url": f"{server.url}/v1",
        "image_openai_api_key": IMAGE_KEY,
    }


def read_output(aws: AwsWorld, job_id: str, name: str) -> bytes:
    body: bytes = aws.s3.get_object(Bucket=aws.output_bucket, Key=f"results/{job_id}/{name}")["Body"].read()
    return body


def png_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.size


def link_valid_for_s(url: str) -> float:
    """How long a presigned URL stays valid from now (SigV4's X-Amz-Expires, or SigV2's Expires)."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    if "X-Amz-Expires" in query:
        signed = dt.datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        end = signed + dt.timedelta(seconds=int(query["X-Amz-Expires"][0]))
    else:
        end = dt.datetime.fromtimestamp(int(query["Expires"][0]), dt.UTC)
    return (end - dt.datetime.now(dt.UTC)).total_seconds()


TWO_DAYS = 2 * 24 * 3600


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def get_job(gateway: ThreadedServer, job_id: str) -> gateway_pb2.Job:
    async with GatewayClient(gateway.address) as client:
        return await client.get(job_id)


# --- subtitle-picture: voice file -> subtitles -> picture prompt -> picture ---------------------------


def test_subtitle_picture_from_a_voice_upload(
    aws: AwsWorld,
    tmp_path: Path,
    stt_service: ThreadedServer,
    generation_summarizer: ThreadedServer,
    image_server: LocalImageServer,
    start_gateway: Callable[..., ThreadedServer],
) -> None:
    image_server.reset()
    gateway = start_gateway(
        gateway_settings(
            aws,
            tmp_path,
            stt_address=stt_service.address,
            summarizer_address=generation_summarizer.address,
            **image_settings(image_server),
        )
    )
    said = "A red kite flies over the green hills by the sea on a sunny afternoon."
    aws.upload("pictures/kite.wav", wav(speak(said)))
    [job] = finished_jobs(gateway, 1, timeout=600)
    assert (job.state, job.pipeline, job.runs) == ("SUCCEEDED", "subtitle-picture", 1), job.error
    outputs = {o.name: o for o in store_of(gateway).outputs(job.id)}
    assert set(outputs) == {
        "transcript.txt",
        "transcript.json",
        "subtitles.srt",
        "subtitles.vtt",
        "picture-prompt.txt",
        "picture.png",
    }
    assert "kite" in read_output(aws, job.id, "subtitles.srt").decode().lower()
    prompt = read_output(aws, job.id, "picture-prompt.txt").decode().strip()
    assert prompt
    # What the image service was sent: the pipeline's style and the prompt the model wrote.
    [(api, model, body)] = image_server.requests
    assert (api, model, body["size"]) == ("openai", "gpt-image-1", "1024x1024")
    assert body["prompt"] == clip(f"a colourful, friendly illustration: {prompt}", 1000)
    assert png_size(read_output(aws, job.id, "picture.png")) == (1024, 1024)
    assert outputs["picture.png"].content_type == "image/png"

    got = run(get_job(gateway, job.id))
    [text] = got.result.generated_texts
    assert (text.stage, text.text) == ("picture-prompt", prompt)
    [image] = got.result.images
    assert (image.stage, image.output_name, image.width_px, image.engine) == (
        "picture",
        "picture.png",
        1024,
        "openai",
    )
    assert image.prompt == body["prompt"]
    presigned = {o.name: o.presigned_url for o in got.outputs}["picture.png"]
    with urllib.request.urlopen(presigned, timeout=10) as response:
        assert png_size(response.read()) == (1024, 1024)
    # The saved stage result describes the picture; its bytes live in S3 only.
    [stage] = [s for s in store_of(gateway).stages(job.id) if s.name == "picture"]
    assert stage.result is not None
    assert len(stage.result) < 2000

    # A recording without speech: the subtitles are delivered; there is nothing to draw, and no
    # model is asked to invent a picture of nothing.
    aws.upload("pictures/quiet.wav", wav(silence(2.0)))
    jobs = finished_jobs(gateway, 2, timeout=300)
    [quiet] = [j for j in jobs if j.source_uri.endswith("quiet.wav")]
    assert quiet.state == "PARTIAL", quiet.error
    assert "picture-prompt" in quiet.error
    assert "nothing to write from" in quiet.error
    assert {o.name for o in store_of(gateway).outputs(quiet.id)} == {
        "transcript.txt",
        "transcript.json",
        "subtitles.srt",
        "subtitles.vtt",
    }
    assert len(image_server.requests) == 1


# --- schedules on real replicas -----------------------------------------------------------------------

TICKS = """
name: ticks
parameters:
  label: {default: "tick"}
schedules:
  - cron: "* * * * * */2"
    parameters: {label: "a clock face"}
stages:
  - name: picture
    uses: image.generate
    timeout_s: 60
    with: {prompt: "{label}", model: stand-in, size: 256x256, outputs: [picture.png]}
"""


def schedule_jobs(store: JobStore, name: str) -> list[JobRecord]:
    jobs, _ = store.list_jobs(page_size=1000, metadata={SCHEDULE_KEY: name})
    return sorted(jobs, key=lambda j: j.metadata[TICK_KEY])


def ticks_of(jobs: list[JobRecord]) -> list[dt.datetime]:
    return [dt.datetime.fromisoformat(j.metadata[TICK_KEY]) for j in jobs]


def runner_of(store: JobStore, job: JobRecord) -> str:
    """The replica that ran the job (the event of its claim says `run 1 on <worker>`)."""
    claims = [e.message for e in store.events_after(job.id, 0) if e.message.startswith("run 1 on ")]
    return claims[0].removeprefix("run 1 on ")


def test_two_replicas_fire_each_tick_once_and_hand_over(
    aws: AwsWorld,
    tmp_path: Path,
    image_server: LocalImageServer,
    start_gateway: Callable[..., ThreadedServer],
    postgres_database: str,
) -> None:
    image_server.reset()
    name = f"ticks-{aws.input_bucket}"
    pipelines = tmp_path / "ticks.yaml"
    pipelines.write_text(TICKS.replace("name: ticks", f"name: {name}"))
    common = dict(
        gateway_queue_url=None,
        gateway_database_url=postgres_database,
        gateway_pipelines_file=str(pipelines),
        gateway_schedule_poll_s=0.5,  # a replica that goes hands over within 1.5 s
        **image_settings(image_server),
    )
    replicas = [start_gateway(gateway_settings(aws, tmp_path / f"r{i}", **common)) for i in (1, 2)]
    store = JobStore(postgres_database)
    try:
        wait_until(lambda: len(schedule_jobs(store, name)) >= 4, 60, "four ticks")
        holder = store.lease_holder(f"schedule:{name}")
        [leader] = [r for r in replicas if r.service.worker_id == holder]
        [other] = [r for r in replicas if r is not leader]
        leader_id, other_id = leader.service.worker_id, other.service.worker_id
        leader.stop(grace=5)  # hands its lease back: the other replica fires the next tick
        stopped = len(schedule_jobs(store, name))
        wait_until(lambda: len(schedule_jobs(store, name)) >= stopped + 3, 60, "three more ticks")
        other.stop(grace=10)
        jobs = schedule_jobs(store, name)
        ticks = ticks_of(jobs)
        # One job per tick, none missed, none doubled, from the first tick to the last.
        assert len(set(ticks)) == len(ticks)
        assert all(b - a == dt.timedelta(seconds=2) for a, b in itertools.pairwise(ticks)), ticks
        assert {j.source_uri for j in jobs} == {f"schedule:{name}@{t.isoformat()}" for t in ticks}
        # Both replicas ran ticks (the holder first, then the other after the hand-over) ...
        runners = [runner_of(store, j) for j in jobs if j.terminal]
        assert {leader_id, other_id} <= set(runners)
        assert runners.index(other_id) > runners.index(leader_id)
        # ... and each job ran once, to the end, with its picture of the schedule's parameter.
        finished = [j for j in jobs if j.terminal]
        assert len(finished) >= len(jobs) - 1  # the last tick may have come as the replica stopped
        for job in finished:
            assert (job.state, job.runs, job.origin) == ("SUCCEEDED", 1, "schedule"), job.error
        assert {body["prompt"] for _, _, body in image_server.requests} == {"a clock face"}
        state = store.schedule_states()[name]
        assert state.last_tick_at == ticks[-1]
        assert state.last_job_id == jobs[-1].id
    finally:
        store.close()


def test_a_restarted_gateway_skips_or_catches_up_missed_ticks(
    aws: AwsWorld,
    tmp_path: Path,
    image_server: LocalImageServer,
    start_gateway: Callable[..., ThreadedServer],
) -> None:
    """`skip` does not run the ticks missed while no gateway ran; `all` runs each of them once."""
    pipeline = yaml.safe_load(TICKS)
    pipeline["schedules"] = [
        {"name": f"{policy}-{aws.input_bucket}", "cron": "* * * * * */3", "catch_up": policy, "grace_s": 1}
        for policy in ("skip", "all")
    ]
    pipelines = tmp_path / "ticks.yaml"
    pipelines.write_text(yaml.safe_dump(pipeline))
    settings = gateway_settings(
        aws,
        tmp_path,
        gateway_queue_url=None,
        gateway_pipelines_file=str(pipelines),
        gateway_schedule_poll_s=0.5,
        **image_settings(image_server),
    )
    skip, catch_up = (f"{policy}-{aws.input_bucket}" for policy in ("skip", "all"))
    first = start_gateway(settings)
    store = JobStore(settings.gateway_database_url)
    try:
        wait_until(
            lambda: schedule_jobs(store, skip) and schedule_jobs(store, catch_up), 30, "a tick of each"
        )
        first.stop(grace=10)
        stopped_at = dt.datetime.now(dt.UTC)
        time.sleep(7.5)  # two or three ticks go by with no gateway
        restarted_at = dt.datetime.now(dt.UTC)
        second = start_gateway(settings)
        wait_until(
            lambda: any(t > restarted_at for t in ticks_of(schedule_jobs(store, skip))), 30, "a tick on time"
        )
        second.stop(grace=10)
        missed = [
            t
            for t in ticks_of(schedule_jobs(store, catch_up))
            if stopped_at < t < restarted_at - dt.timedelta(seconds=1)
        ]
        assert len(missed) >= 2, "the ticks missed while down ran once each under catch_up: all"
        assert all(b - a == dt.timedelta(seconds=3) for a, b in itertools.pairwise(missed))
        every = ticks_of(schedule_jobs(store, catch_up))
        assert len(every) == len(set(every))
        assert all(b - a == dt.timedelta(seconds=3) for a, b in itertools.pairwise(every)), every
        skipped = [
            t
            for t in ticks_of(schedule_jobs(store, skip))
            if stopped_at < t < restarted_at - dt.timedelta(seconds=1)
        ]
        assert skipped == [], "under catch_up: skip the missed ticks do not run"
    finally:
        store.close()


def test_a_pipeline_that_reads_no_audio_runs_from_submit_job(
    aws: AwsWorld,
    tmp_path: Path,
    image_server: LocalImageServer,
    start_gateway: Callable[..., ThreadedServer],
) -> None:
    """What a tick does, on demand: `soriflow submit --pipeline nightly-story -p topic=...`."""
    import grpc

    pipeline = yaml.safe_load(TICKS)
    pipeline["schedules"][0]["enabled"] = False
    pipelines = tmp_path / "ticks.yaml"
    pipelines.write_text(yaml.safe_dump(pipeline))
    gateway = start_gateway(
        gateway_settings(
            aws,
            tmp_path,
            gateway_queue_url=None,
            gateway_pipelines_file=str(pipelines),
            **image_settings(image_server),
        )
    )

    async def api() -> None:
        async with GatewayClient(gateway.address) as client:
            job = await client.submit_parameters(
                "ticks", parameters={"label": "an owl"}, idempotency_key="owl"
            )
            assert job.source_uri == f"api:{job.job_id}"
            done = await client.wait(job.job_id, timeout=60)
            assert done.state == gateway_pb2.JOB_STATE_SUCCEEDED, done.error
            assert [o.name for o in done.outputs] == ["picture.png"]
            assert done.result.images[0].prompt == "an owl"
            again = await client.submit_parameters(
                "ticks", parameters={"label": "an owl"}, idempotency_key="owl"
            )
            assert again.job_id == job.job_id
            for pipeline_name, words in (("", "no audio"), ("transcribe", "reads it in stages ['stt']")):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await client.submit_parameters(pipeline_name)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert words in (caught.value.details() or "")

    run(api())
    env = os.environ | {"SORIFLOW_GATEWAY_ADDRESS": gateway.address, "COLUMNS": "200"}
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "soriflow.cli.main",
            "submit",
            "--pipeline",
            "ticks",
            "-p",
            "label=a fox",
            "--watch",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    assert "picture: picture.png (256x256, openai stand-in) for: a fox" in cli.stdout


# --- nightly-story: schedule -> story -> audio + picture in parallel -> notification --------------------


def story_pipelines(path: Path, tag: str, at: dt.datetime) -> str:
    """The built-in nightly-story, as shipped, with two schedules at `at` (UTC): one whose picture
    the image service refuses."""
    builtin = PipelineRegistry.load().get("nightly-story").source_yaml
    pipeline = yaml.safe_load(builtin)
    cron = f"{at.minute} {at.hour} {at.day} {at.month} * {at.second}"
    pipeline["schedules"] = [
        {
            "name": f"fox-{tag}",
            "cron": cron,
            "parameters": {"topic": "a small fox who is afraid of the dark"},
        },
        {"name": f"castle-{tag}", "cron": cron, "parameters": {"topic": f"a {BLOCKED} castle in the clouds"}},
    ]
    path.write_text(yaml.safe_dump(pipeline, sort_keys=False, allow_unicode=True))
    return str(path)


def test_nightly_story_fires_from_its_schedule_on_two_replicas(
    aws: AwsWorld,
    tmp_path: Path,
    generation_summarizer: ThreadedServer,
    tts_service: ThreadedServer,
    image_server: LocalImageServer,
    start_gateway: Callable[..., ThreadedServer],
    postgres_database: str,
) -> None:
    import boto3

    image_server.reset()
    sns = boto3.client("sns", endpoint_url=aws.endpoint, region_name="us-east-1")
    topic = sns.create_topic(Name=f"stories-{aws.input_bucket}")["TopicArn"]
    inbox = aws.sqs.create_queue(QueueName=f"inbox-{aws.input_bucket}")["QueueUrl"]
    inbox_arn = aws.sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn)
    tag = aws.input_bucket
    at = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)).replace(microsecond=0)
    settings = dict(
        gateway_queue_url=None,
        gateway_database_url=postgres_database,
        gateway_pipelines_file=story_pipelines(tmp_path / "story.yaml", tag, at),
        gateway_schedule_poll_s=1,
        gateway_sns_topic_arn=topic,
        summarizer_address=generation_summarizer.address,
        tts_address=tts_service.address,
        **image_settings(image_server),
    )
    replicas = [start_gateway(gateway_settings(aws, tmp_path / f"r{i}", **settings)) for i in (1, 2)]
    # A schedule's past is not due: the replicas must be up before its tick (they take seconds).
    assert dt.datetime.now(dt.UTC) < at - dt.timedelta(seconds=2), "the replicas started too slowly"
    store = JobStore(postgres_database)
    try:

        def both_done() -> list[JobRecord] | None:
            jobs = [j for s in (f"fox-{tag}", f"castle-{tag}") for j in schedule_jobs(store, s)]
            return jobs if len(jobs) == 2 and all(j.terminal for j in jobs) else None

        fox, castle = wait_until(both_done, 900, "both stories")
        for job in (fox, castle):  # fired once, at its time, by one replica, and run once
            assert (job.origin, job.runs) == ("schedule", 1)
            assert dt.datetime.fromisoformat(job.metadata[TICK_KEY]) == at
        assert fox.state == "SUCCEEDED", fox.error
        story = read_output(aws, fox.id, "story.txt").decode().strip()
        assert len(story.split()) >= 20, story
        assert {o.name for o in store.outputs(fox.id)} == {"story.txt", "story.mp3", "picture.png"}
        audio = read_output(aws, fox.id, "story.mp3")
        assert audio[:3] == b"ID3" or audio[0] == 0xFF, audio[:8]  # an MP3 frame sync
        assert len(audio) > 10_000
        assert png_size(read_output(aws, fox.id, "picture.png")) == (1024, 1024)
        prompts = [body["prompt"] for _, _, body in image_server.requests]
        [fox_prompt] = [p for p in prompts if "fox" in p]
        assert fox_prompt.startswith("A soft watercolour illustration for a children's bedtime story about a")
        assert story[:40] in fox_prompt
        assert len(fox_prompt) <= 900
        # The picture the image service refused: the story still comes, with its audio (PARTIAL).
        assert castle.state == "PARTIAL", castle.error
        assert "picture" in castle.error
        assert "content policy" in castle.error
        assert {o.name for o in store.outputs(castle.id)} == {"story.txt", "story.mp3"}

        got = run(get_job(replicas[0], fox.id))
        [text] = got.result.generated_texts
        assert (text.stage, text.text) == ("story", story)
        assert [i.output_name for i in got.result.images] == ["picture.png"]
        links = {o.name: o.presigned_url for o in got.outputs}
        assert TWO_DAYS - 120 < link_valid_for_s(links["story.txt"]) <= TWO_DAYS  # the pipeline's links
        with urllib.request.urlopen(links["story.txt"], timeout=10) as response:
            assert response.read().decode().strip() == story

        # The notification: readable, one per story, with links valid for two days.
        notes: dict[str, Any] = {}

        def notified() -> bool:
            for message in aws.sqs.receive_message(QueueUrl=inbox, WaitTimeSeconds=1).get("Messages", []):
                envelope = json.loads(message["Body"])
                notes[json.loads(envelope["Message"])["job_id"]] = envelope
            return len(notes) == 2

        wait_until(notified, 60, "two notifications")
        assert notes[fox.id]["Subject"] == "Soriflow: nightly-story job succeeded"
        assert notes[castle.id]["Subject"] == "Soriflow: nightly-story job finished without an optional stage"
        note = json.loads(notes[fox.id]["Message"])
        expires = dt.datetime.fromisoformat(note["links_expire_at"]) - dt.datetime.now(dt.UTC)
        assert dt.timedelta(days=1, hours=23) < expires <= dt.timedelta(days=2)
        assert f"Source:   schedule:fox-{tag}@{at.isoformat()}" in note["text"]
        for output in note["outputs"]:
            assert f"- {output['name']}: {output['url']}" in note["text"]
            assert TWO_DAYS - 120 < link_valid_for_s(output["url"]) <= TWO_DAYS
    finally:
        store.close()
