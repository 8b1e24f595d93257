"""soriflow.storage against moto's real S3 wire protocol."""

from __future__ import annotations

import urllib.request

import pytest

from soriflow.audio import AudioLimits
from soriflow.config import CommonSettings
from soriflow.errors import InvalidArgument, NotFound, PermissionDenied, ResourceExhausted, Unavailable
from soriflow.inputs import fetch_audio_bytes
from soriflow.storage import ObjectStore, ReadAllowList, S3Uri, key_from_event
from soriflow.v1 import audio_pb2


@pytest.fixture
def store(s3_env: str) -> ObjectStore:
    store = ObjectStore(CommonSettings())
    store.client.create_bucket(Bucket="bucket")
    return store


def test_s3_uri_parsing() -> None:
    assert S3Uri.parse("s3://b/a/b.wav") == S3Uri("b", "a/b.wav")
    assert str(S3Uri("b", "k")) == "s3://b/k"
    assert S3Uri.parse("s3://b/prefix/").join("job", "/x.json") == S3Uri("b", "prefix/job/x.json")
    assert S3Uri.parse("s3://b").join("x") == S3Uri("b", "x")
    for bad in ("http://b/k", "s3:///k", "b/k"):
        with pytest.raises(InvalidArgument):
            S3Uri.parse(bad)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://bucket", "names a bucket, not an object"),
        ("s3://bucket/", "names a bucket, not an object"),
        ("s3://bucket/folder/", "names a prefix"),
        ("s3://bucket/a/../b.wav", "traversal"),
        ("s3://bucket/./b.wav", "traversal"),
        ("s3://bucket/a\x00.wav", "control characters"),
        ("s3://bucket/a\nb.wav", "control characters"),
        ("s3://bu cket/a.wav", "not a bucket name"),
        ("s3://bucket/" + "k" * 1025, "at most 1024 bytes"),
        ("", "is empty"),
        ("file:///etc/passwd", "not an S3 URI"),
    ],
)
def test_object_uris_are_checked_before_s3_is_asked(uri: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        S3Uri.parse_object(uri, "audio.uri")
    assert S3Uri.parse_object("s3://b/users/kim/한국어 1.wav") == S3Uri("b", "users/kim/한국어 1.wav")


def test_read_allow_list() -> None:
    allowed = ReadAllowList.parse(["s3://in/users", "s3://refs/", "s3://acme-*-input/calls/"])
    assert allowed.allows(S3Uri("in", "users/kim/a.wav"))
    assert not allowed.allows(S3Uri("in", "users2/a.wav"))  # a prefix is a folder
    assert not allowed.allows(S3Uri("in", "secret.wav"))
    assert allowed.allows(S3Uri("refs", "anything/at/all.wav"))
    assert allowed.allows(S3Uri("acme-kr-input", "calls/1.wav"))
    assert not allowed.allows(S3Uri("acme-kr-output", "calls/1.wav"))
    assert not allowed.allows(S3Uri("some-other-bucket", "secret.wav"))
    with pytest.raises(PermissionDenied, match="SORIFLOW_READ_URIS"):
        allowed.check(S3Uri("some-other-bucket", "secret.wav"), "audio.uri")
    with pytest.raises(PermissionDenied, match="reads no S3 location"):
        ReadAllowList.parse([]).check(S3Uri("in", "users/a.wav"))
    assert ReadAllowList.parse(["s3://*/"]).allows(S3Uri("whatever", "x"))
    for bad in ("in/users/", "https://in/", "s3:///x", "s3://in/../x/"):
        with pytest.raises(ValueError, match=r"s3://|bucket|segments"):
            ReadAllowList.parse([bad])
    with pytest.raises(ValueError, match="read_uris"):
        CommonSettings(read_uris=["not-a-uri"])


def test_gateway_reads_its_inputs_and_submissions_by_default() -> None:
    from soriflow.gateway.settings import Settings

    settings = Settings(
        gateway_input_uris=["s3://in/connect/"], gateway_submissions_uri="s3://in/submissions/"
    )
    allowed = ReadAllowList.parse(settings.readable_uris())
    assert allowed.allows(S3Uri("in", "connect/call.wav"))
    assert allowed.allows(S3Uri("in", "submissions/job/audio.wav"))
    assert not allowed.allows(S3Uri("in", "reference/x.wav"))
    more = Settings(read_uris=["s3://standard-audio-file/"], gateway_input_uris=["s3://in/connect/"])
    assert ReadAllowList.parse(more.readable_uris()).allows(S3Uri("standard-audio-file", "a/b.wav"))


async def test_fetch_checks_the_allow_list_before_s3(store: ObjectStore) -> None:
    store.write_bytes("s3://bucket/in/a.wav", b"RIFF")
    store.write_bytes("s3://bucket/secret/a.wav", b"RIFF")
    limits = AudioLimits(max_bytes=1000, max_duration_s=10)
    allowed = ReadAllowList.parse(["s3://bucket/in/"])
    got = await fetch_audio_bytes(
        audio_pb2.AudioInput(uri="s3://bucket/in/a.wav"), store=store, limits=limits, allowed=allowed
    )
    assert got == b"RIFF"
    with pytest.raises(PermissionDenied, match=r"audio.uri s3://bucket/secret/a.wav"):
        await fetch_audio_bytes(
            audio_pb2.AudioInput(uri="s3://bucket/secret/a.wav"), store=store, limits=limits, allowed=allowed
        )
    with pytest.raises(InvalidArgument, match="names a bucket"):
        await fetch_audio_bytes(
            audio_pb2.AudioInput(uri="s3://bucket"), store=store, limits=limits, allowed=allowed
        )


def test_an_empty_key_is_invalid_not_unavailable(store: ObjectStore) -> None:
    with pytest.raises(InvalidArgument):
        store.read_bytes(S3Uri("bucket", ""))


def test_round_trip_head_metadata_and_listing(store: ObjectStore) -> None:
    info = store.write_bytes("s3://bucket/dir/a.bin", b"hello", content_type="audio/wav", metadata={"x": "1"})
    assert info.size == 5
    head = store.head("s3://bucket/dir/a.bin")
    assert (head.size, head.content_type, head.metadata) == (5, "audio/wav", {"x": "1"})
    assert store.read_bytes("s3://bucket/dir/a.bin") == b"hello"
    assert b"".join(store.iter_chunks("s3://bucket/dir/a.bin", chunk_bytes=2)) == b"hello"
    store.write_bytes("s3://bucket/dir/b.bin", b"x")
    assert sorted(o.uri.key for o in store.list_objects("s3://bucket/dir/")) == ["dir/a.bin", "dir/b.bin"]
    assert store.exists("s3://bucket/dir/b.bin")
    assert not store.exists("s3://bucket/dir/c.bin")


def test_presigned_url_downloads_the_object(store: ObjectStore) -> None:
    store.write_bytes("s3://bucket/p.txt", b"presigned")
    url = store.presigned_url("s3://bucket/p.txt", 60)
    assert "Signature" in url or "X-Amz-Signature" in url
    assert urllib.request.urlopen(url, timeout=5).read() == b"presigned"


def test_size_is_checked_before_download(store: ObjectStore) -> None:
    store.write_bytes("s3://bucket/big.bin", b"x" * 2048)
    downloads = []
    store.client.meta.events.register("before-call.s3.GetObject", lambda **_: downloads.append(1))
    with pytest.raises(ResourceExhausted, match="2048 bytes, over the limit of 1024"):
        store.read_bytes("s3://bucket/big.bin", max_bytes=1024)
    assert downloads == [], "refused from HEAD alone, without a GetObject"
    assert store.read_bytes("s3://bucket/big.bin", max_bytes=4096) == b"x" * 2048
    assert downloads == [1]


def test_an_object_replaced_by_a_bigger_one_after_head_is_still_capped(store: ObjectStore) -> None:
    store.write_bytes("s3://bucket/grows.bin", b"x" * 100)

    def replace_before_get(**_: object) -> None:
        store.client.meta.events.unregister("before-call.s3.GetObject", replace_before_get)
        store.write_bytes("s3://bucket/grows.bin", b"y" * (3 * 1024 * 1024))

    store.client.meta.events.register("before-call.s3.GetObject", replace_before_get)
    with pytest.raises(ResourceExhausted, match="more than 1024 bytes"):
        store.read_bytes("s3://bucket/grows.bin", max_bytes=1024)


def test_missing_object_and_bucket_are_not_found(store: ObjectStore) -> None:
    with pytest.raises(NotFound, match=r"s3://bucket/nope\.wav does not exist"):
        store.read_bytes("s3://bucket/nope.wav", max_bytes=10)
    with pytest.raises(NotFound):
        store.read_bytes("s3://no-such-bucket/x")


def test_unreachable_endpoint_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SORIFLOW_S3_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    store = ObjectStore(CommonSettings())
    store.client.meta.config.retries["max_attempts"] = 1
    with pytest.raises(Unavailable, match="cannot reach S3"):
        store.head("s3://bucket/x")


def test_event_keys_are_url_decoded_like_s3_encodes_them() -> None:
    assert (
        key_from_event("users/kim+min/level_1/audio+line%2B1.wav") == "users/kim min/level_1/audio line+1.wav"
    )
    assert key_from_event("%ED%95%9C%EA%B5%AD%EC%96%B4.wav") == "한국어.wav"
