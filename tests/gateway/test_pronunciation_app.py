"""An English-learning app's layout and table, unchanged, on the real stack (moto, services, PostgreSQL).

Learners upload `users/{user}/{content_type}/level_{n}/{Title_With_Underscores}/audio_line_{n}.wav`;
native references live in another bucket, `standard-audio-file`, at
`{content_type}/level_{n}/{Title With Spaces}/audio_line_{n}.wav` (examples/django/pipelines.yaml).
The app (examples/django) reads its learners' results through the Django ORM from the
`pronunciation_attempts` view, by user and by its generic relation's ids.
"""

from __future__ import annotations

import asyncio
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from soriflow.client import GatewayClient
from soriflow.errors import InvalidArgument
from soriflow.gateway.stages import StageContext, external_ids, pronunciation_row
from soriflow.gateway.store import JobRecord, JobStore
from soriflow.server import ThreadedServer
from soriflow.v1 import audio_pb2, gateway_pb2, scoring_pb2
from tests.gateway.conftest import REFERENCE_BUCKET, AwsWorld, gateway_settings
from tests.gateway.speech import silence, speak, wav

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "django"
SENTENCE = "I went to the toy store with my sister"


def reference_bucket(aws: AwsWorld) -> str:
    """The app's reference bucket (one name for the whole moto server, as in a real account)."""
    if REFERENCE_BUCKET not in {b["Name"] for b in aws.s3.list_buckets()["Buckets"]}:
        aws.s3.create_bucket(Bucket=REFERENCE_BUCKET)
    return REFERENCE_BUCKET


def finished(store: JobStore, count: int, timeout: float = 300) -> list[JobRecord]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs, _ = store.list_jobs(page_size=100)
        done = [j for j in jobs if j.terminal and not (j.state == "FAILED" and j.retryable)]
        if len(done) >= count:
            return done
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {count} finished jobs")


def test_the_callers_ids_are_checked_and_dashes_count_as_underscores() -> None:
    assert external_ids({"Content-Type-Id": "12", "object_id": " 345 ", "user": "kim", "other": "x"}) == {
        "content_type_id": "12",
        "object_id": "345",
    }
    with pytest.raises(InvalidArgument, match=r"content_type_id '1\.5' is not a whole number"):
        external_ids({"content-type-id": "1.5"})
    with pytest.raises(InvalidArgument, match="object_id is 201 characters"):
        external_ids({"object-id": "x" * 201})
    assert external_ids({"content-type-id": "1.5", "object-id": "9"}, strict=False) == {"object_id": "9"}


def test_a_scored_row_keeps_every_score_and_leaves_unmeasured_ones_null() -> None:
    error = scoring_pb2.WordScore
    score = scoring_pb2.ScoreResponse(
        overall_score=70,
        pitch_similarity=0.0,
        reference_text="i went to the store",
        recognized_text="i want to store now",
        prosody=scoring_pb2.ProsodyMetrics(rhythm_similarity=0.0),
        words=[
            error(word="i", error_type=scoring_pb2.WORD_ERROR_TYPE_NONE),
            error(word="went", error_type=scoring_pb2.WORD_ERROR_TYPE_SUBSTITUTION),
            error(word="to", error_type=scoring_pb2.WORD_ERROR_TYPE_NONE),
            error(word="the", error_type=scoring_pb2.WORD_ERROR_TYPE_OMISSION),
            error(word="store", error_type=scoring_pb2.WORD_ERROR_TYPE_MISPRONUNCIATION),
            error(word="now", error_type=scoring_pb2.WORD_ERROR_TYPE_INSERTION),
        ],
    )
    ctx = StageContext(
        job_id="j",
        source_uri="s3://in/users/7/book/level_1/Toy_Store/audio_line_2.wav",
        params={"reference_uri": ""},
        results={},
        clients=None,  # type: ignore[arg-type]
        timeout_s=0,
        metadata={"user": "7", "content_type": "book", "object-id": "345", "content-type-id": "12"},
    )
    row = pronunciation_row(ctx, {"reference_from": "stt-reference"}, score)
    assert (row.user_id, row.content_type_id, row.object_id) == ("7", 12, "345")
    assert row.audio_file == "users/7/book/level_1/Toy_Store/audio_line_2.wav"
    assert row.mispronounced_ratio == pytest.approx(3 / 5), (
        "3 of the 5 reference words; the insertion is not one"
    )
    assert row.mispronounced_words == ["went", "the", "store", "now"]
    assert row.recognized_text == "i want to store now"
    # Scored against text only: no reference recording, so no pitch, rhythm or energy measured.
    assert (row.pitch_similarity, row.rhythm_similarity, row.energy_similarity) == (None, None, None)


def test_a_reference_bucket_outside_the_read_allow_list_fails_the_job_with_permission_denied(
    aws: AwsWorld, tmp_path: Path, start_gateway: Callable[..., ThreadedServer]
) -> None:
    """Not "no reference": the job names the bucket and the setting; the app sees the failed attempt."""
    bucket = reference_bucket(aws)
    title = f"Toy Store {uuid.uuid4().hex[:6]}"
    aws.s3.put_object(Bucket=bucket, Key=f"book/level_1/{title}/audio_line_2.wav", Body=b"RIFF")
    gateway = start_gateway(
        gateway_settings(aws, tmp_path, gateway_pipelines_file=str(EXAMPLE / "pipelines.yaml"))
    )
    store: JobStore = gateway.service.store
    key = f"users/7/book/level_1/{title.replace(' ', '_')}/audio_line_2.wav"
    aws.upload(key, wav(speak(SENTENCE)), metadata={"content-type-id": "12", "object-id": "345"})
    bad_ids = f"users/8/book/level_1/{title.replace(' ', '_')}/audio_line_3.wav"
    aws.upload(bad_ids, wav(speak(SENTENCE)), metadata={"content-type-id": "lesson", "object-id": "9"})
    jobs = {j.source_uri.split("/", 3)[3]: j for j in finished(store, 2, timeout=60)}

    denied = jobs[key]
    assert (denied.state, denied.error_code) == ("FAILED", "PERMISSION_DENIED")
    reference = f"s3://{bucket}/book/level_1/{title}/audio_line_2.wav"
    assert f"parameter reference_uri (the pipeline's default for this key) {reference}" in denied.error
    assert "SORIFLOW_READ_URIS" in denied.error
    assert "readUris" in denied.error
    assert "no reference" not in denied.error
    [attempt] = store.pronunciation_attempts(content_type_id=12, object_id="345")
    assert (attempt["status"], attempt["error_code"], attempt["user_id"]) == (
        "FAILED",
        "PERMISSION_DENIED",
        "7",
    )
    assert (attempt["audio_file"], attempt["overall_score"]) == (key, None)

    refused = jobs[bad_ids]
    assert (refused.state, refused.error_code) == ("FAILED", "INVALID_ARGUMENT")
    assert "content_type_id 'lesson' is not a whole number" in refused.error
    [attempt] = store.pronunciation_attempts(object_id="9")
    assert (attempt["status"], attempt["content_type_id"]) == ("FAILED", None)

    async def submit() -> None:
        async with GatewayClient(gateway.address) as client:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await client.stub.SubmitJob(
                    gateway_pb2.SubmitJobRequest(
                        audio=audio_pb2.AudioInput(uri=f"s3://{aws.input_bucket}/{key}"),
                        idempotency_key=uuid.uuid4().hex,
                    )
                )
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert reference in str(caught.value.details())

    asyncio.run(submit())
    assert len(store.list_jobs(page_size=100)[0]) == 2, "a refused SubmitJob leaves no job"


@pytest.fixture
def app_database(postgres_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for the app and the job store together, dropped afterwards."""
    import psycopg

    name = f"soriflow_django_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{postgres_url.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def configure_django(url: str) -> None:
    """Django's settings for the example app, on the job store's database (once per process)."""
    import django
    from django.conf import settings

    if settings.configured:
        pytest.fail("Django is configured once per process; only this test configures it")
    parts = urllib.parse.urlsplit(url)
    sys.path.insert(0, str(EXAMPLE))
    settings.configure(
        SECRET_KEY="test",
        USE_TZ=True,
        ALLOWED_HOSTS=["testserver"],
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.sessions",
            "app",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
        ROOT_URLCONF="learning_site.urls",
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": parts.path.lstrip("/"),
                "USER": parts.username or "postgres",
                "PASSWORD": parts.password or "",
                "HOST": parts.hostname or "127.0.0.1",
                "PORT": str(parts.port or 5432),
            }
        },
    )
    django.setup()


@pytest.mark.slow
def test_a_django_app_reads_its_learners_results_through_its_orm(
    aws: AwsWorld,
    tmp_path: Path,
    stt_service: ThreadedServer,
    scoring_service: ThreadedServer,
    start_gateway: Callable[..., ThreadedServer],
    app_database: str,
) -> None:
    gateway = start_gateway(
        gateway_settings(
            aws,
            tmp_path,
            stt_address=stt_service.address,
            scoring_address=scoring_service.address,
            gateway_database_url=app_database,
            gateway_pipelines_file=str(EXAMPLE / "pipelines.yaml"),
            read_uris=[f"s3://{REFERENCE_BUCKET}/"],  # the chart's readUris
        )
    )
    configure_django(app_database)
    from app.models import Line, UserPronunciation  # type: ignore[import-not-found]
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connections
    from django.test import Client

    try:
        call_command("migrate", verbosity=0)  # Django's tables beside the job store's
        learner = User.objects.create_user("minji")
        other = User.objects.create_user("junho")
        title = (
            f"Toy Store {uuid.uuid4().hex[:6]}"  # spaces in the reference key, underscores in the learner's
        )
        line = Line.objects.create(kind="book", level=1, title=title, number=2, text=SENTENCE)
        aws.s3.put_object(
            Bucket=reference_bucket(aws),
            Key=f"book/level_1/{title}/audio_line_2.wav",
            Body=wav(speak(SENTENCE, "en-us")),
        )
        key = line.upload_key(learner.pk)
        assert key == f"users/{learner.pk}/book/level_1/{title.replace(' ', '_')}/audio_line_2.wav"
        aws.upload(key, wav(speak(SENTENCE, "en-us+m3", speed_wpm=130)), metadata=line.upload_metadata())
        aws.upload(
            line.upload_key(other.pk),
            wav(np_concat(speak("I went to the store"), silence(0.3))),
            metadata=line.upload_metadata(),
        )
        store: JobStore = gateway.service.store
        jobs = finished(store, 2)
        assert all(j.state == "SUCCEEDED" for j in jobs), [(j.source_uri, j.error) for j in jobs]
        for job in jobs:
            stages = {s.name: s.state for s in store.stages(job.id)}
            assert stages["stt-reference"] == "SUCCEEDED", "scored against the reference in the other bucket"

        attempt = UserPronunciation.objects.get(
            user_id=str(learner.pk), content_type__model="line", object_id=line.pk
        )
        assert attempt.status == UserPronunciation.Status.SUCCEEDED
        assert attempt.done
        assert attempt.content_object == line
        assert attempt.audio_file.name == key
        assert attempt.reference_uri == f"s3://{REFERENCE_BUCKET}/book/level_1/{title}/audio_line_2.wav"
        assert attempt.rhythm_similarity is not None
        assert 0 <= attempt.rhythm_similarity <= 1
        assert attempt.mispronounced_ratio is not None
        assert 0 <= attempt.mispronounced_ratio <= 1
        assert attempt.overall_score is not None
        assert attempt.overall_score > 0
        assert isinstance(attempt.feedback, list)
        assert attempt.feedback
        assert attempt.scored_at is not None
        assert attempt.created_at <= attempt.scored_at

        # The generic relation from the app's side, and per learner.
        assert line.pronunciations.count() == 2
        short = line.pronunciations.get(user_id=str(other.pk))
        assert short.mispronounced_ratio is not None
        assert short.mispronounced_ratio > attempt.mispronounced_ratio, (
            "words left out count as not said right"
        )
        assert short.completeness_score is not None
        assert attempt.completeness_score is not None
        assert short.completeness_score < attempt.completeness_score
        assert set(UserPronunciation.objects.filter(line__kind="book").values_list("user_id", flat=True)) == {
            str(learner.pk),
            str(other.pk),
        }

        # What the app's client polls: its own attempts at the line, through a view.
        client = Client()
        client.force_login(learner)
        response: Any = client.get(f"/lines/{line.pk}/pronunciations/")
        assert response.status_code == 200
        [shown] = response.json()["attempts"]
        assert (shown["status"], shown["audio_file"]) == ("SUCCEEDED", key)
        assert shown["mispronounced_ratio"] == pytest.approx(attempt.mispronounced_ratio)
    finally:
        connections.close_all()


def np_concat(*parts: Any) -> Any:
    import numpy as np

    return np.concatenate(parts)
