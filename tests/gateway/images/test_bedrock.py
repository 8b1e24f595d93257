"""The Bedrock image engine: boto3 `bedrock-runtime` InvokeModel against the local server.

The documented body of each model family (Nova Canvas, Titan, Stability), the PNG that comes back,
the checks made before a call, the three ways content filtering is reported, and Bedrock's errors.
"""

from __future__ import annotations

import pytest

from soriflow.errors import FailedPrecondition, InvalidArgument, ResourceExhausted, Unavailable
from soriflow.gateway.images.base import ContentRejected, ImageRequest, read_png
from soriflow.gateway.images.bedrock import BedrockImageEngine, nearest_ratio
from soriflow.gateway.images.local import LocalImageServer

pytestmark = pytest.mark.usefixtures("aws_keys")


def engine(
    server: LocalImageServer, model_id: str = "amazon.nova-canvas-v1:0", **kw: object
) -> BedrockImageEngine:
    options: dict[str, object] = {"max_attempts": 1, "timeout_s": 20}
    return BedrockImageEngine(model_id=model_id, endpoint_url=server.url, **(options | kw))  # type: ignore[arg-type]


def test_nova_canvas_body_and_png(server: LocalImageServer) -> None:
    request = ImageRequest("A lighthouse at dawn", 1280, 720, negative_prompt="people", seed=42)
    image = engine(server, cfg_scale=8.0).generate(request)
    assert (image.width, image.height, image.engine, image.model) == (
        1280,
        720,
        "bedrock",
        "amazon.nova-canvas-v1:0",
    )
    assert read_png(image.png, provider="test") == (1280, 720)
    [(api, model, body)] = server.requests
    assert (api, model) == ("bedrock", "amazon.nova-canvas-v1:0")
    assert body == {
        "taskType": "TEXT_IMAGE",
        "textToImageParams": {"text": "A lighthouse at dawn", "negativeText": "people"},
        "imageGenerationConfig": {
            "numberOfImages": 1,
            "width": 1280,
            "height": 720,
            "cfgScale": 8.0,
            "quality": "standard",
            "seed": 42,
        },
    }


def test_cross_region_profile_and_titan_body(server: LocalImageServer) -> None:
    image = engine(server, "us.amazon.nova-canvas-v1:0").generate(ImageRequest("A red kite"))
    assert (image.width, image.height) == (1024, 1024)
    titan = engine(server, "amazon.titan-image-generator-v2:0")
    titan.generate(ImageRequest("A red kite", 768, 768))
    assert server.requests[-1][1] == "amazon.titan-image-generator-v2:0"
    assert "seed" not in server.requests[-1][2]["imageGenerationConfig"]  # the model's default seed
    with pytest.raises(
        InvalidArgument, match=r"513 characters; amazon\.titan-image-generator-v2:0 takes at most 512"
    ):
        titan.generate(ImageRequest("x" * 513))


def test_stability_body_uses_the_nearest_aspect_ratio(server: LocalImageServer) -> None:
    request = ImageRequest("A quiet harbour, watercolour", 1280, 720, negative_prompt="text", seed=7)
    image = engine(server, "stability.stable-image-core-v1:1").generate(request)
    [(_, _, body)] = server.requests
    assert body == {
        "prompt": "A quiet harbour, watercolour",
        "aspect_ratio": "16:9",
        "output_format": "png",
        "negative_prompt": "text",
        "seed": 7,
    }
    assert (image.width, image.height, image.seed) == (1344, 768, 7)
    assert nearest_ratio(1024, 1024) == "1:1"
    assert nearest_ratio(720, 1280) == "9:16"
    assert nearest_ratio(1000, 800) == "5:4"


def test_checks_before_a_call(server: LocalImageServer) -> None:
    with pytest.raises(
        InvalidArgument, match="Nova Canvas cannot make 1000x720: each side must be a multiple of 16"
    ):
        engine(server).generate(ImageRequest("A boat", 1000, 720))
    with pytest.raises(InvalidArgument, match="aspect ratio at most 4:1"):
        engine(server).generate(ImageRequest("A boat", 4096, 512))
    with pytest.raises(InvalidArgument, match="seeds 0-858993459"):
        engine(server).generate(ImageRequest("A boat", seed=2**40))
    with pytest.raises(FailedPrecondition, match="not one this engine speaks to"):
        BedrockImageEngine(model_id="anthropic.claude-3-haiku")
    assert server.requests == []


@pytest.mark.parametrize(
    ("model_id", "prompt", "message"),
    [
        (
            "amazon.nova-canvas-v1:0",
            "a forbidden scene",
            "refused the prompt under its content policy: This request has been blocked",
        ),
        (
            "amazon.nova-canvas-v1:0",
            "an unseen scene",
            "blocked the generated picture: All of the generated images",
        ),
        (
            "stability.stable-image-core-v1:1",
            "a forbidden scene",
            "filtered the picture: Filter reason: prompt",
        ),
        (
            "stability.stable-image-core-v1:1",
            "an unseen scene",
            "filtered the picture: Filter reason: output image",
        ),
    ],
)
def test_content_filtering_is_content_rejected(
    server: LocalImageServer, model_id: str, prompt: str, message: str
) -> None:
    with pytest.raises(ContentRejected, match=message):
        engine(server, model_id).generate(ImageRequest(prompt))


def test_throttling_is_retried_by_boto3_then_resource_exhausted(server: LocalImageServer) -> None:
    server.fail_next(429, "ThrottlingException", "Too many requests, please wait before trying again.")
    assert engine(server, max_attempts=2).generate(ImageRequest("A boat")).png
    assert len(server.requests) == 2
    server.fail_next(429, "ThrottlingException", "Too many requests", times=2)
    with pytest.raises(ResourceExhausted, match=r"Bedrock is throttling amazon\.nova-canvas-v1:0") as info:
        engine(server, max_attempts=2, retry_after_s=9).generate(ImageRequest("A boat"))
    assert info.value.retry_after_s == pytest.approx(9.0)


@pytest.mark.parametrize(
    ("status", "code", "error", "message"),
    [
        (403, "AccessDeniedException", FailedPrecondition, "check the IAM role"),
        (404, "ResourceNotFoundException", FailedPrecondition, "SORIFLOW_IMAGE_BEDROCK_MODEL_ID"),
        (400, "ValidationException", InvalidArgument, "Bedrock rejected the image request"),
        (408, "ModelTimeoutException", Unavailable, "Bedrock failed \\(ModelTimeoutException\\)"),
        (500, "InternalServerException", Unavailable, "Bedrock failed \\(InternalServerException\\)"),
        (503, "ServiceUnavailableException", Unavailable, "Bedrock failed \\(ServiceUnavailableException\\)"),
        (429, "ModelNotReadyException", ResourceExhausted, "Bedrock is throttling"),
    ],
)
def test_bedrock_errors_map(
    server: LocalImageServer, status: int, code: str, error: type[Exception], message: str
) -> None:
    server.fail_next(status, code, "something went wrong")
    with pytest.raises(error, match=message) as info:
        engine(server).generate(ImageRequest("A boat"))
    assert "something went wrong" in str(info.value)
    assert engine(server).generate(ImageRequest("A boat")).png


def test_unreachable_endpoint_is_unavailable() -> None:
    broken = BedrockImageEngine(endpoint_url="http://127.0.0.1:9", max_attempts=1, timeout_s=3)
    with pytest.raises(Unavailable, match="Bedrock is unreachable"):
        broken.generate(ImageRequest("A boat"))
