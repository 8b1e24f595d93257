"""Amazon Bedrock text-to-image models through boto3 (`bedrock-runtime` `InvokeModel`).

Two documented body schemas, chosen by the model id:

* `amazon.nova-canvas-*` and `amazon.titan-image-generator-*`:
  `{"taskType": "TEXT_IMAGE", "textToImageParams": {"text", "negativeText"},
  "imageGenerationConfig": {"numberOfImages", "width", "height", "cfgScale",
  "seed", "quality"}}`, answered by `{"images": [base64 PNG], "error": ...}`.
  Nova Canvas takes 1-1,024 prompt characters and any size from 320 to 4,096
  pixels a side in multiples of 16 (at most 4.19 megapixels, aspect at most
  4:1); Titan 1-512 characters and a fixed list of sizes (Bedrock checks).
* `stability.*` (Stable Image Core / Ultra, SD3): `{"prompt",
  "negative_prompt", "aspect_ratio", "seed", "output_format": "png"}`,
  answered by `{"seeds", "finish_reasons", "images"}`; the size is given as the
  nearest of the model's aspect ratios.

Content filtering is reported three ways and all become ContentRejected: a
ValidationException "blocked by our content filters" (Nova/Titan prompt), an
`error` field in a successful answer (Nova/Titan picture), and a
`finish_reasons` entry "Filter reason: ..." (Stability). Throttling and a
model that is still loading are RESOURCE_EXHAUSTED (boto3 retried first);
timeouts and server errors UNAVAILABLE; refused credentials, missing model
access and unknown model ids FAILED_PRECONDITION.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from soriflow.errors import (
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    SoriflowError,
    Unavailable,
)
from soriflow.gateway.images.base import (
    ContentRejected,
    GeneratedImage,
    ImageRequest,
    check_prompt,
    read_png,
)

#: Aspect ratios the Stability models on Bedrock take.
STABILITY_RATIOS = ("21:9", "16:9", "3:2", "5:4", "1:1", "4:5", "2:3", "9:16", "9:21")
#: Seeds each family accepts.
SEED_RANGES = {"nova": 858_993_459, "titan": 2_147_483_646, "stability": 4_294_967_295}
PROMPT_LIMITS = {"nova": 1024, "titan": 512, "stability": 10_000}

_THROTTLING = {"ThrottlingException", "ModelNotReadyException", "ServiceQuotaExceededException"}
_SERVER = {
    "ModelTimeoutException",
    "ServiceUnavailableException",
    "InternalServerException",
    "ModelErrorException",
}
_DEPLOYMENT = {
    "AccessDeniedException",
    "UnrecognizedClientException",
    "ExpiredTokenException",
    "InvalidSignatureException",
    "ResourceNotFoundException",
}


def family(model_id: str) -> str:
    """`nova`, `titan` or `stability` for a Bedrock model id (cross-region prefixes like `us.` allowed)."""
    bare = model_id.split("/")[-1]
    parts = bare.split(".")
    if len(parts) > 2 and len(parts[0]) == 2:  # us.amazon.nova-canvas-v1:0
        bare = ".".join(parts[1:])
    if bare.startswith("amazon.nova-canvas"):
        return "nova"
    if bare.startswith("amazon.titan-image-generator"):
        return "titan"
    if bare.startswith("stability."):
        return "stability"
    raise FailedPrecondition(
        f"Bedrock image model {model_id!r} is not one this engine speaks to: use amazon.nova-canvas-*, "
        "amazon.titan-image-generator-* or stability.* (SORIFLOW_IMAGE_BEDROCK_MODEL_ID)"
    )


def nearest_ratio(width: int, height: int) -> str:
    """The Stability aspect ratio closest to width:height (compared in log space)."""
    import math

    target = math.log(width / height)

    def distance(ratio: str) -> float:
        w, h = (int(x) for x in ratio.split(":"))
        return abs(math.log(w / h) - target)

    return min(STABILITY_RATIOS, key=distance)


def check_nova_size(width: int, height: int) -> None:
    """Nova Canvas's documented size rules, checked before paying for a call."""
    problems = []
    if not (320 <= width <= 4096 and 320 <= height <= 4096):
        problems.append("each side must be 320-4096 pixels")
    if width % 16 or height % 16:
        problems.append("each side must be a multiple of 16")
    if width * height > 4_194_304:
        problems.append("at most 4,194,304 pixels")
    if max(width, height) > 4 * min(width, height):
        problems.append("aspect ratio at most 4:1")
    if problems:
        raise InvalidArgument(f"Nova Canvas cannot make {width}x{height}: {'; '.join(problems)}")


def map_error(exc: Exception, *, model_id: str, retry_after_s: float) -> SoriflowError:
    """Soriflow's error for a failed InvokeModel call (see the module docstring)."""
    import botocore.exceptions as bexc

    if isinstance(exc, bexc.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", "")) or str(exc)
        if code == "ValidationException" and "content filters" in message:
            return ContentRejected(f"Bedrock refused the prompt under its content policy: {message}")
        if code in _THROTTLING:
            return ResourceExhausted(
                f"Bedrock is throttling {model_id} ({code}: {message}); retry in {retry_after_s:g}s",
                retry_after_s=retry_after_s,
            )
        if code in _DEPLOYMENT:
            return FailedPrecondition(
                f"Bedrock refused {model_id} ({code}: {message}); check the IAM role (bedrock:InvokeModel), "
                "model access in this region, and SORIFLOW_IMAGE_BEDROCK_MODEL_ID"
            )
        if code in _SERVER:
            return Unavailable(f"Bedrock failed ({code}): {message}")
        if code == "ValidationException":
            return InvalidArgument(f"Bedrock rejected the image request: {message}")
        return Unavailable(f"Bedrock failed ({code or 'unknown error'}): {message}")
    if isinstance(exc, bexc.NoCredentialsError | bexc.PartialCredentialsError):
        return FailedPrecondition(
            f"no AWS credentials for Bedrock: {exc} (use an IRSA service account, an instance role, "
            "or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
        )
    if isinstance(exc, bexc.ReadTimeoutError | bexc.ConnectTimeoutError):
        return Unavailable(f"Bedrock did not answer in time: {exc}")
    if isinstance(exc, bexc.EndpointConnectionError | bexc.ConnectionClosedError):
        return Unavailable(f"Bedrock is unreachable: {exc}")
    return Unavailable(f"Bedrock failed: {type(exc).__name__}: {exc}")


class BedrockImageEngine:
    """Pictures from a Bedrock text-to-image model (Nova Canvas by default)."""

    name = "bedrock"

    def __init__(
        self,
        *,
        model_id: str = "amazon.nova-canvas-v1:0",
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        cfg_scale: float = 6.5,
        timeout_s: float = 120.0,
        max_attempts: int = 3,
        retry_after_s: float = 20.0,
    ) -> None:
        self.model = model_id
        self.family = family(model_id)
        self.region = region
        self.endpoint_url = endpoint_url
        self.cfg_scale = cfg_scale
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.retry_after_s = retry_after_s
        self._client: Any = None

    def _get_client(self) -> Any:
        if self._client is None:
            import boto3
            import botocore.config

            config = botocore.config.Config(
                region_name=self.region,
                connect_timeout=min(10.0, self.timeout_s),
                read_timeout=self.timeout_s,
                retries={"total_max_attempts": self.max_attempts, "mode": "standard"},
            )
            # Its own session: boto3's default one is process-wide and keeps its first credentials.
            self._client = boto3.session.Session().client(
                "bedrock-runtime", endpoint_url=self.endpoint_url or None, config=config
            )
        return self._client

    def body(self, request: ImageRequest) -> dict[str, Any]:
        """The model's native request body, after checking the request against the model's limits."""
        check_prompt(request, max_chars=PROMPT_LIMITS[self.family], model=self.model)
        if request.seed is not None and not 0 <= request.seed <= SEED_RANGES[self.family]:
            raise InvalidArgument(
                f"{self.model} takes seeds 0-{SEED_RANGES[self.family]}, not {request.seed}"
            )
        if self.family == "stability":
            body: dict[str, Any] = {
                "prompt": request.prompt,
                "aspect_ratio": nearest_ratio(request.width, request.height),
                "output_format": "png",
            }
            if request.negative_prompt:
                body["negative_prompt"] = request.negative_prompt
            if request.seed is not None:
                body["seed"] = request.seed
            return body
        if self.family == "nova":
            check_nova_size(request.width, request.height)
        params: dict[str, Any] = {"text": request.prompt}
        if request.negative_prompt:
            params["negativeText"] = request.negative_prompt[: PROMPT_LIMITS[self.family]]
        config: dict[str, Any] = {
            "numberOfImages": 1,
            "width": request.width,
            "height": request.height,
            "cfgScale": self.cfg_scale,
            "quality": "standard",
        }
        if request.seed is not None:
            config["seed"] = request.seed
        return {"taskType": "TEXT_IMAGE", "textToImageParams": params, "imageGenerationConfig": config}

    def generate(self, request: ImageRequest) -> GeneratedImage:
        body = self.body(request)
        client = self._get_client()
        try:
            response = client.invoke_model(
                modelId=self.model,
                body=json.dumps(body).encode(),
                contentType="application/json",
                accept="application/json",
            )
            stream = response["body"]
            try:
                raw = stream.read()
            finally:
                stream.close()
        except Exception as exc:
            raise map_error(exc, model_id=self.model, retry_after_s=self.retry_after_s) from exc
        try:
            payload = json.loads(raw)
        except ValueError as exc:
            raise Unavailable(f"Bedrock's answer is not JSON: {raw[:80]!r}") from exc
        images, seed = self._images(payload, request.seed)
        try:
            png = base64.b64decode(images[0], validate=True)
        except (binascii.Error, ValueError, TypeError) as exc:
            raise Unavailable(f"Bedrock's image is not base64: {exc}") from exc
        width, height = read_png(png, provider="Bedrock")
        return GeneratedImage(
            png=png, width=width, height=height, engine=self.name, model=self.model, seed=seed
        )

    def _images(self, payload: dict[str, Any], seed: int | None) -> tuple[list[str], int | None]:
        images = [i for i in payload.get("images") or [] if i]
        if self.family == "stability":
            reasons = [r for r in payload.get("finish_reasons") or [] if r]
            if any(str(r).startswith("Filter reason") for r in reasons):
                raise ContentRejected(
                    f"Bedrock ({self.model}) filtered the picture: {', '.join(map(str, reasons))}"
                )
            if reasons:
                raise Unavailable(
                    f"Bedrock ({self.model}) could not make the picture: {', '.join(map(str, reasons))}"
                )
            seeds = payload.get("seeds") or []
            seed = int(seeds[0]) if seeds else seed
        elif payload.get("error"):
            message = str(payload["error"])
            if "content filters" in message and not images:
                raise ContentRejected(f"Bedrock ({self.model}) blocked the generated picture: {message}")
            if not images:
                raise Unavailable(f"Bedrock ({self.model}) could not make the picture: {message}")
        if not images:
            raise Unavailable(f"Bedrock ({self.model}) answered with no picture")
        return images, seed

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
