"""The image-engine interface the gateway's `image` stage calls, and what every engine shares.

Image generation is a remote API call (OpenAI's Images API, Amazon Bedrock's
InvokeModel), made by the gateway itself as Step Functions calls Bedrock: no
Soriflow service sits in between. An engine takes a prompt and a size and
returns one PNG; everything it can get wrong is one of the errors below, so
the stage's retry policy and `optional` flag decide what happens next.

Errors, by what the pipeline should do:

* `ContentRejected` (INVALID_ARGUMENT): the provider's safety system refused
  the prompt or the picture. Retrying the same prompt will not help; a story
  pipeline marks its picture optional and completes without it.
* `InvalidArgument`: the request itself is wrong (empty or too long a prompt,
  a size the model does not make).
* `ResourceExhausted` with a retry hint: rate limits (429); retryable.
* `Unavailable`: server errors, timeouts, unreachable endpoint, an answer that
  is not a picture; retryable.
* `FailedPrecondition`: refused credentials, an unknown model, exhausted
  billing quota: the deployment must change, retrying will not help.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Protocol

from soriflow.errors import InvalidArgument, Unavailable

#: The PNG file signature.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ContentRejected(InvalidArgument):
    """The provider's content policy refused the prompt or the generated picture."""


@dataclass(frozen=True)
class ImageRequest:
    """One picture to make."""

    prompt: str
    width: int = 1024
    height: int = 1024
    #: What the picture should not show (engines without the notion ignore it).
    negative_prompt: str = ""
    #: Same seed, same prompt: the same picture, where the model allows it.
    seed: int | None = None


@dataclass(frozen=True)
class GeneratedImage:
    """A generated picture: PNG bytes and what made it."""

    png: bytes
    width: int
    height: int
    engine: str
    model: str
    #: The prompt the provider actually used, when it rewrote it (DALL-E 3 does).
    revised_prompt: str = ""
    seed: int | None = None

    media_type: str = "image/png"


class ImageEngine(Protocol):
    name: str
    model: str

    def generate(self, request: ImageRequest) -> GeneratedImage:
        """Makes one picture; blocking (the stage runs it in a thread). Raises the errors above."""

    def close(self) -> None:
        """Releases the client's connections."""


def parse_size(size: str) -> tuple[int, int]:
    """`"1024x768"` -> (1024, 768); INVALID_ARGUMENT naming the value otherwise."""
    width, sep, height = size.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or int(width) <= 0 or int(height) <= 0:
        raise InvalidArgument(f"image size {size!r} is not WIDTHxHEIGHT in pixels, e.g. 1024x1024")
    return int(width), int(height)


def check_prompt(request: ImageRequest, *, max_chars: int, model: str) -> None:
    """A prompt the model can take: not blank, within its length limit."""
    if not request.prompt.strip():
        raise InvalidArgument("the image prompt is empty: there is nothing to draw")
    if len(request.prompt) > max_chars:
        raise InvalidArgument(
            f"the image prompt is {len(request.prompt)} characters; {model} takes at most {max_chars}: "
            "shorten the prompt template or summarise before the image stage"
        )


def read_png(data: bytes, *, provider: str) -> tuple[int, int]:
    """Width and height of a PNG the provider sent; UNAVAILABLE when it is not one (a broken answer)."""
    from PIL import Image, UnidentifiedImageError

    if not data.startswith(PNG_SIGNATURE):
        raise Unavailable(f"{provider} answered with something that is not a PNG ({data[:16]!r}...)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
            width, height = image.size
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise Unavailable(f"{provider} answered with a broken PNG: {exc}") from exc
    return int(width), int(height)
