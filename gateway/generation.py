"""Generation stage kinds: free text from a prompt, and a picture from a prompt.

`summarizer.generate` fills a prompt template with the job's parameters and
the text of earlier stages (`{stt}` is the transcript of a stage named stt,
`{story}` the text of a generate stage named story) and asks the summarizer
service's Generate RPC, so the same instruction LMs that summarize (SmolLM2
in-process, llama.cpp, any OpenAI-compatible server) write stories and
picture prompts. Free text is not grounded (it is meant to be new); what the
stage guards instead is what a person would be handed: a prompt built from an
empty transcript is refused (there is nothing to write about), and text the
model left unfinished at the token cap keeps its complete sentences only.

`image.generate` sends a prompt template, filled the same way, to the image
engine the settings name (`SORIFLOW_IMAGE_*`: OpenAI's Images API or Bedrock,
or any server speaking them) or the stage's own `engine`/`model`, and stores
the PNG as the stage's output. The picture's bytes go to S3, never into the
job store: the saved result is its description (`GeneratedImage`).
"""

from __future__ import annotations

import asyncio
import json
import string
from collections.abc import Mapping
from typing import Any, ClassVar

from google.protobuf import json_format
from google.protobuf.message import Message

from soriflow.errors import FailedPrecondition, Internal, InvalidArgument
from soriflow.gateway.stages import (
    OutputFile,
    StageContext,
    StageKind,
    register,
    stage_texts,
    template_variables,
)
from soriflow.gateway.templates import render
from soriflow.text.sentences import sentence_spans
from soriflow.v1 import gateway_pb2, summarizer_pb2

#: Content types of the text outputs a generate stage writes, by file extension.
TEXT_OUTPUTS = {".txt": "text/plain; charset=utf-8", ".md": "text/markdown; charset=utf-8"}


def _outputs(args: Mapping[str, Any]) -> list[str]:
    return [str(name) for name in args.get("outputs", [])]


def _number(args: Mapping[str, Any], key: str, kind: type[int] | type[float], stage: str) -> Any:
    """A numeric argument (possibly rendered from a parameter); '' and absent mean unset (None)."""
    value = args.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{stage}: {key} must be a number, not {value!r}") from None


def fill_prompt(ctx: StageContext, template: str, what: str) -> str:
    """The prompt template filled with the job's parameters and earlier stages' text.

    A template that names an earlier stage whose text is empty (a recording without speech) is
    refused: a model asked to write about nothing writes something anyway, and a person would
    be handed it.
    """
    if not template.strip():
        raise InvalidArgument(f"{what} needs a `prompt` template")
    texts = stage_texts(ctx)
    for _, field, _, _ in string.Formatter().parse(template):
        name = (field or "").split(".")[0].split("[")[0]
        if name in texts and not texts[name].strip():
            raise InvalidArgument(
                f"{what}: nothing to write from: stage {name} has no text (e.g. a recording without "
                "recognized speech)"
            )
    return render(template, template_variables(ctx)).strip()


def complete_sentences(text: str) -> str:
    """`text` up to the end of its last complete sentence ('' when it has none)."""
    pieces = sentence_spans(text)
    while pieces and not pieces[-1][1]:
        pieces.pop()
    return "".join(piece for piece, _ in pieces).strip()


def clip(text: str, limit: int) -> str:
    """`text` within `limit` characters, cut after a sentence or, failing that, a word."""
    if len(text) <= limit:
        return text
    kept = ""
    for piece, _ in sentence_spans(text):
        if len(kept) + len(piece) > limit:
            break
        kept += piece
    if not kept.strip():
        kept = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return kept.strip()


@register
class Generate(StageKind):
    """summarizer.generate: free text (a story, a picture prompt) from a prompt template."""

    name = "summarizer.generate"
    service = "summarizer"
    result_type: ClassVar[type[Message]] = summarizer_pb2.GenerateResponse
    late_bound: ClassVar[frozenset[str]] = frozenset({"prompt"})

    async def call(self, ctx: StageContext, args: Mapping[str, Any]) -> Message:
        for name in _outputs(args):
            self._content_type(name)  # a misnamed output fails before the model is asked
        request = summarizer_pb2.GenerateRequest(
            prompt=fill_prompt(ctx, str(args.get("prompt", "") or ""), self.name),
            max_output_tokens=_number(args, "max_output_tokens", int, self.name) or 0,
            temperature=_number(args, "temperature", float, self.name) or 0.0,
            engine=str(args.get("engine", "") or ""),
            language_code=str(args.get("language_code", "") or ""),
        )
        seed = _number(args, "seed", int, self.name)
        if seed is not None:
            request.seed = seed
        response: summarizer_pb2.GenerateResponse = await ctx.clients.stub("summarizer").Generate(
            request, timeout=ctx.timeout_s
        )
        if response.truncated and args.get("complete_sentences", True) not in (False, "false", "no"):
            kept = complete_sentences(response.text)
            if not kept:
                raise FailedPrecondition(
                    f"the model wrote no complete sentence within max_output_tokens="
                    f"{request.max_output_tokens or 'the server default'} ({response.output_tokens} tokens): "
                    "raise max_output_tokens or ask for a shorter text"
                )
            response.text = kept
        if not response.text.strip():
            raise FailedPrecondition(
                f"{response.model} ({response.engine}) wrote nothing for this prompt; reword the prompt"
            )
        return response

    @staticmethod
    def _content_type(name: str) -> str:
        if name.endswith(".json"):
            return "application/json"
        for extension, content_type in TEXT_OUTPUTS.items():
            if name.endswith(extension):
                return content_type
        raise InvalidArgument(
            f"summarizer.generate writes text (.txt, .md) or its whole answer (.json), not {name!r}"
        )

    def outputs(self, ctx: StageContext, args: Mapping[str, Any], result: Message) -> list[OutputFile]:
        assert isinstance(result, summarizer_pb2.GenerateResponse)
        files = []
        for name in _outputs(args):
            content_type = self._content_type(name)
            if content_type == "application/json":
                data = json_format.MessageToDict(result, preserving_proto_field_name=True)
                body = (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode()
            else:
                body = (result.text.strip() + "\n").encode()
            files.append(OutputFile(name, body, content_type))
        return files

    def apply(
        self, ctx: StageContext, args: Mapping[str, Any], result: Message, job_result: gateway_pb2.JobResult
    ) -> None:
        assert isinstance(result, summarizer_pb2.GenerateResponse)
        job_result.generated_texts.add(
            stage=ctx.stage,
            text=result.text,
            model=result.model,
            engine=result.engine,
            truncated=result.truncated,
        )

    def text_of(self, result: Message) -> str | None:
        assert isinstance(result, summarizer_pb2.GenerateResponse)
        return result.text.strip()


#: The key under which an image stage's `call` hands the PNG to `outputs` (StageContext.scratch).
PNG = "image.png"


@register
class Image(StageKind):
    """image.generate: a picture from a prompt template, by the configured image engine."""

    name = "image.generate"
    service = "images"
    result_type: ClassVar[type[Message]] = gateway_pb2.GeneratedImage
    late_bound: ClassVar[frozenset[str]] = frozenset({"prompt", "negative_prompt"})

    def _output_name(self, args: Mapping[str, Any]) -> str:
        names = _outputs(args)
        if len(names) != 1 or not names[0].endswith(".png"):
            raise InvalidArgument(
                f"image.generate writes one PNG: outputs must name one .png file, not {names}"
            )
        return names[0]

    async def call(self, ctx: StageContext, args: Mapping[str, Any]) -> Message:
        from soriflow.gateway.images import ImageRequest, parse_size

        output = self._output_name(args)
        prompt = fill_prompt(ctx, str(args.get("prompt", "") or ""), self.name)
        limit = _number(args, "max_prompt_chars", int, self.name)
        if limit is not None:
            if limit <= 0:
                raise InvalidArgument(f"{self.name}: max_prompt_chars must be positive, not {limit}")
            prompt = clip(prompt, limit)
        negative = str(args.get("negative_prompt", "") or "")
        negative = render(negative, template_variables(ctx)).strip() if negative else ""
        default_size = str(getattr(ctx.clients.settings, "image_size", "1024x1024"))
        size = str(args.get("size", "") or "") or default_size
        width, height = parse_size(size)
        engine = ctx.clients.image_engine(str(args.get("engine", "") or ""), str(args.get("model", "") or ""))
        request = ImageRequest(
            prompt,
            width,
            height,
            negative_prompt=negative,
            seed=_number(args, "seed", int, self.name),
        )
        image = await asyncio.to_thread(engine.generate, request)  # blocking client; its own timeout
        ctx.scratch[PNG] = image.png
        return gateway_pb2.GeneratedImage(
            stage=ctx.stage,
            output_name=output,
            prompt=prompt,
            revised_prompt=image.revised_prompt,
            engine=image.engine,
            model=image.model,
            width_px=image.width,
            height_px=image.height,
        )

    def outputs(self, ctx: StageContext, args: Mapping[str, Any], result: Message) -> list[OutputFile]:
        assert isinstance(result, gateway_pb2.GeneratedImage)
        png = ctx.scratch.pop(PNG, None)
        if png is None:
            raise Internal("image.generate: the picture of this attempt is missing")
        return [OutputFile(result.output_name, png, "image/png")]

    def apply(
        self, ctx: StageContext, args: Mapping[str, Any], result: Message, job_result: gateway_pb2.JobResult
    ) -> None:
        assert isinstance(result, gateway_pb2.GeneratedImage)
        job_result.images.append(result)

    def text_of(self, result: Message) -> str | None:
        assert isinstance(result, gateway_pb2.GeneratedImage)
        return result.revised_prompt or result.prompt
