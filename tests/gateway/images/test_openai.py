"""The OpenAI image engine: the official `openai` client against the local Images API server.

What the client really sends per model family, the PNG it really gets back, the checks made before
paying for a call, and every error OpenAI gives (content policy, 429 with retry-after, billing
quota, refused key, 5xx, unreachable) mapped to Soriflow's.
"""

from __future__ import annotations

import pytest

from soriflow.errors import FailedPrecondition, InvalidArgument, ResourceExhausted, Unavailable
from soriflow.gateway.images.base import ContentRejected, ImageRequest, read_png
from soriflow.gateway.images.local import LocalImageServer
from soriflow.gateway.images.openai import OpenAIImageEngine

from .conftest import API_KEY


def engine(server: LocalImageServer, model: str = "gpt-image-1", **kw: object) -> OpenAIImageEngine:
    options: dict[str, object] = {"max_attempts": 1, "timeout_s": 20, "api_key": API_KEY}
    return OpenAIImageEngine(model=model, base_url=f"{server.url}/v1", **(options | kw))  # type: ignore[arg-type]


def test_gpt_image_model_gets_a_png_and_is_asked_for_png(server: LocalImageServer) -> None:
    image = engine(server).generate(ImageRequest("A small fox reading under the moon", 1024, 1536))
    assert (image.width, image.height, image.engine, image.model) == (1024, 1536, "openai", "gpt-image-1")
    assert read_png(image.png, provider="test") == (1024, 1536)
    [(api, model, body)] = server.requests
    assert (api, model) == ("openai", "gpt-image-1")
    assert body == {
        "model": "gpt-image-1",
        "prompt": "A small fox reading under the moon",
        "n": 1,
        "size": "1024x1536",
        "output_format": "png",
    }


def test_dall_e_3_is_asked_for_b64_json_with_quality_and_returns_the_revised_prompt(
    server: LocalImageServer,
) -> None:
    image = engine(server, "dall-e-3", quality="hd").generate(
        ImageRequest("A lighthouse at dawn", 1792, 1024)
    )
    [(_, _, body)] = server.requests
    assert body["response_format"] == "b64_json"
    assert body["quality"] == "hd"
    assert "output_format" not in body
    assert (image.width, image.height) == (1792, 1024)
    assert image.revised_prompt == "A lighthouse at dawn"


def test_checks_before_paying_for_a_call(server: LocalImageServer) -> None:
    with pytest.raises(
        InvalidArgument, match="dall-e-3 makes 1024x1024, 1024x1792, 1792x1024 pictures, not 512x512"
    ):
        engine(server, "dall-e-3").generate(ImageRequest("A cat", 512, 512))
    with pytest.raises(InvalidArgument, match="4001 characters; dall-e-3 takes at most 4000"):
        engine(server, "dall-e-3").generate(ImageRequest("x" * 4001))
    with pytest.raises(InvalidArgument, match="prompt is empty"):
        engine(server).generate(ImageRequest("   "))
    assert server.requests == []


def test_other_models_pass_their_size_through(server: LocalImageServer) -> None:
    """An OpenAI-compatible server's own model (no size list known here) gets the size as asked."""
    image = engine(server, "local-sdxl").generate(ImageRequest("A red bicycle", 640, 480))
    assert (image.width, image.height) == (640, 480)
    assert server.requests[0][2]["response_format"] == "b64_json"


def test_content_policy_is_content_rejected(server: LocalImageServer) -> None:
    with pytest.raises(
        ContentRejected, match="content policy: Your request was rejected as a result of our safety system"
    ):
        engine(server).generate(ImageRequest("Something forbidden"))
    assert issubclass(ContentRejected, InvalidArgument)  # INVALID_ARGUMENT: retrying will not help


def test_rate_limit_is_retried_by_the_client_then_resource_exhausted_with_its_delay(
    server: LocalImageServer,
) -> None:
    server.fail_next(
        429, "rate_limit_exceeded", "Rate limit reached for images per minute", retry_after_s=0.2
    )
    image = engine(server, max_attempts=2).generate(ImageRequest("A boat"))  # the client's own retry
    assert image.width == 1024
    assert len(server.requests) == 2
    server.fail_next(429, "rate_limit_exceeded", "Rate limit reached for images per minute", retry_after_s=7)
    with pytest.raises(ResourceExhausted, match="OpenAI rate limit: Rate limit reached") as info:
        engine(server).generate(ImageRequest("A boat"))
    assert info.value.retry_after_s == pytest.approx(7.0)


@pytest.mark.parametrize(
    ("status", "code", "error", "message"),
    [
        (429, "insufficient_quota", FailedPrecondition, r"quota exhausted \(billing\)"),
        (500, "server_error", Unavailable, r"OpenAI failed \(500\)"),
        (503, "overloaded", Unavailable, r"OpenAI failed \(503\)"),
        (404, "model_not_found", FailedPrecondition, "check SORIFLOW_IMAGE_OPENAI_MODEL"),
        (400, "invalid_value", InvalidArgument, r"OpenAI rejected the image request \(invalid_value\)"),
    ],
)
def test_openai_errors_map(
    server: LocalImageServer, status: int, code: str, error: type[Exception], message: str
) -> None:
    server.fail_next(status, code, "something went wrong")
    with pytest.raises(error, match=message) as info:
        engine(server).generate(ImageRequest("A boat"))
    assert "something went wrong" in str(info.value)
    assert engine(server).generate(ImageRequest("A boat")).png  # the next call works


def test_refused_or_missing_key_is_failed_precondition(
    server: LocalImageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(FailedPrecondition, match=r"refused the API key .*SORIFLOW_IMAGE_OPENAI_API_KEY"):
        engine(server, api_key="sk-wrong").generate(ImageRequest("A boat"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(FailedPrecondition, match="no OpenAI API key"):
        engine(server, api_key=None).generate(ImageRequest("A boat"))


def test_unreachable_server_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = OpenAIImageEngine(base_url="http://127.0.0.1:9/v1", api_key="k", max_attempts=1, timeout_s=3)
    with pytest.raises(Unavailable, match="OpenAI is unreachable"):
        broken.generate(ImageRequest("A boat"))
