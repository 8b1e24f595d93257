"""OpenAI's Images API through the official `openai` client (`images.generate`).

The same client reaches OpenAI, Azure-style proxies and any server that speaks
the Images API (`image_openai_base_url`), including the local stand-in
(`soriflow images serve`). One picture per call, asked for as base64 PNG
(`response_format=b64_json` for the DALL-E models; the GPT image models
always answer base64 and take `output_format=png`). OpenAI has no negative
prompt or seed: those request fields are ignored here.

The client retries 429 and 5xx itself (`image_max_attempts`), honouring the
server's `retry-after`; what is left is mapped as `base.py` describes:
`content_policy_violation` / `moderation_blocked` become ContentRejected,
`insufficient_quota` (billing) and refused keys FailedPrecondition, rate
limits RESOURCE_EXHAUSTED with the server's delay.
"""

from __future__ import annotations

import base64
import binascii
import urllib.request
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

#: Longest prompt per model family, in characters (OpenAI's documented limits).
PROMPT_LIMITS = {"dall-e-2": 1000, "dall-e-3": 4000, "gpt-image": 32000}
#: Sizes each model makes; other models (compatible servers) are not checked here.
SIZES = {
    "dall-e-2": {"256x256", "512x512", "1024x1024"},
    "dall-e-3": {"1024x1024", "1792x1024", "1024x1792"},
    "gpt-image": {"1024x1024", "1536x1024", "1024x1536", "auto"},
}
_POLICY_CODES = {"content_policy_violation", "moderation_blocked", "content_filter"}


def _family(model: str) -> str:
    for family in PROMPT_LIMITS:
        if model.startswith(family):
            return family
    return ""


def _retry_after(response: Any, default_s: float) -> float:
    headers = getattr(response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return default_s


def map_error(exc: Exception, *, model: str, retry_after_s: float) -> SoriflowError:
    """Soriflow's error for a failed Images API call (see the module docstring)."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error", body) if isinstance(body, dict) else {}
        code = str((error or {}).get("code") or getattr(exc, "code", "") or "")
        message = str((error or {}).get("message") or exc.message)
        if code in _POLICY_CODES or "safety system" in message:
            return ContentRejected(f"OpenAI refused the prompt under its content policy: {message}")
        if isinstance(exc, openai.RateLimitError):
            if code == "insufficient_quota":
                return FailedPrecondition(f"OpenAI quota exhausted (billing): {message}")
            delay = _retry_after(exc.response, retry_after_s)
            return ResourceExhausted(
                f"OpenAI rate limit: {message}; retry in {delay:g}s", retry_after_s=delay
            )
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            return FailedPrecondition(
                f"OpenAI refused the API key ({exc.status_code}: {message}); check "
                "SORIFLOW_IMAGE_OPENAI_API_KEY / OPENAI_API_KEY"
            )
        if isinstance(exc, openai.NotFoundError):
            return FailedPrecondition(
                f"OpenAI has no {model!r} here ({message}); check SORIFLOW_IMAGE_OPENAI_MODEL and _BASE_URL"
            )
        if exc.status_code >= 500 or exc.status_code in (408, 409):
            return Unavailable(f"OpenAI failed ({exc.status_code}): {message}")
        return InvalidArgument(f"OpenAI rejected the image request ({code or exc.status_code}): {message}")
    if isinstance(exc, openai.APITimeoutError):
        return Unavailable(f"OpenAI did not answer in time: {exc}")
    if isinstance(exc, openai.APIConnectionError):
        return Unavailable(f"OpenAI is unreachable: {exc}")
    if isinstance(exc, openai.OpenAIError):
        return FailedPrecondition(f"the OpenAI client cannot start: {exc}")
    return Unavailable(f"OpenAI failed: {type(exc).__name__}: {exc}")


class OpenAIImageEngine:
    """Pictures from the Images API (`gpt-image-1`, `dall-e-3`, or what a compatible server offers)."""

    name = "openai"

    def __init__(
        self,
        *,
        model: str = "gpt-image-1",
        base_url: str | None = None,
        api_key: str | None = None,
        quality: str | None = None,
        timeout_s: float = 120.0,
        max_attempts: int = 3,
        retry_after_s: float = 20.0,
    ) -> None:
        self.model = model
        self.base_url = base_url
        self.api_key = api_key
        self.quality = quality
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.retry_after_s = retry_after_s
        self._client: Any = None

    def _get_client(self) -> Any:
        if self._client is None:
            import openai

            try:
                self._client = openai.OpenAI(
                    api_key=self.api_key,
                    base_url=self.base_url,
                    timeout=self.timeout_s,
                    max_retries=self.max_attempts - 1,
                )
            except openai.OpenAIError as exc:
                raise FailedPrecondition(
                    f"no OpenAI API key: {exc} (set SORIFLOW_IMAGE_OPENAI_API_KEY or OPENAI_API_KEY)"
                ) from exc
        return self._client

    def request_args(self, request: ImageRequest) -> dict[str, Any]:
        """The `images.generate` arguments for a request, after checking it against the model."""
        family = _family(self.model)
        check_prompt(request, max_chars=PROMPT_LIMITS.get(family, 32000), model=self.model)
        size = f"{request.width}x{request.height}"
        if family and size not in SIZES[family]:
            raise InvalidArgument(
                f"{self.model} makes {', '.join(sorted(SIZES[family]))} pictures, not {size}: "
                "change SORIFLOW_IMAGE_SIZE or the stage's size"
            )
        args: dict[str, Any] = {"model": self.model, "prompt": request.prompt, "n": 1, "size": size}
        if family == "gpt-image":
            args["output_format"] = "png"
        else:
            args["response_format"] = "b64_json"
        if self.quality:
            args["quality"] = self.quality
        return args

    def generate(self, request: ImageRequest) -> GeneratedImage:
        args = self.request_args(request)
        client = self._get_client()
        try:
            response = client.images.generate(**args)
        except Exception as exc:
            raise map_error(exc, model=self.model, retry_after_s=self.retry_after_s) from exc
        if not response.data:
            raise Unavailable("OpenAI answered with no picture")
        item = response.data[0]
        png = self._bytes(item)
        width, height = read_png(png, provider="OpenAI")
        return GeneratedImage(
            png=png,
            width=width,
            height=height,
            engine=self.name,
            model=self.model,
            revised_prompt=str(getattr(item, "revised_prompt", None) or ""),
        )

    def _bytes(self, item: Any) -> bytes:
        if getattr(item, "b64_json", None):
            try:
                return base64.b64decode(item.b64_json, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise Unavailable(f"OpenAI's b64_json is not base64: {exc}") from exc
        if getattr(item, "url", None):  # a compatible server that only answers with links
            if not str(item.url).startswith(("http://", "https://")):
                raise Unavailable(f"OpenAI answered with a picture URL that is not http(s): {item.url!r}")
            try:
                with urllib.request.urlopen(item.url, timeout=self.timeout_s) as answer:
                    return bytes(answer.read())
            except OSError as exc:
                raise Unavailable(f"the picture at {item.url} could not be fetched: {exc}") from exc
        raise Unavailable("OpenAI answered with neither b64_json nor url")

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
