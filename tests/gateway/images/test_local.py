"""The local stand-in server itself, the engine factory from settings, and `soriflow images`."""

from __future__ import annotations

import io
import json
import urllib.request
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from soriflow.errors import Unavailable
from soriflow.gateway.images import create_engine, parse_size
from soriflow.gateway.images.base import read_png
from soriflow.gateway.images.bedrock import BedrockImageEngine
from soriflow.gateway.images.local import LocalImageServer, render_png
from soriflow.gateway.images.openai import OpenAIImageEngine
from soriflow.gateway.images.settings import ImageSettings

from .conftest import API_KEY


def test_render_is_a_real_deterministic_png_of_the_size() -> None:
    png = render_png("A small fox reading under the moon", 640, 480)
    assert png == render_png("A small fox reading under the moon", 640, 480)
    assert png != render_png("A lighthouse", 640, 480)
    with Image.open(io.BytesIO(png)) as image:
        assert (image.format, image.size, image.mode) == ("PNG", (640, 480), "RGB")
        assert len(image.getcolors(1 << 20) or []) > 50  # text and a gradient, not a flat fill


def test_broken_answers_are_unavailable() -> None:
    with pytest.raises(Unavailable, match="not a PNG"):
        read_png(b"<html>error</html>", provider="X")
    with pytest.raises(Unavailable, match="broken PNG"):
        read_png(render_png("x", 64, 64)[:60], provider="X")


def test_url_answers_are_served_and_fetched(server: LocalImageServer) -> None:
    request = urllib.request.Request(
        f"{server.url}/v1/images/generations",
        data=json.dumps(
            {"model": "dall-e-2", "prompt": "A cat", "size": "256x256", "response_format": "url"}
        ).encode(),
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        url = json.loads(answer.read())["data"][0]["url"]
    with urllib.request.urlopen(url, timeout=10) as picture:
        assert read_png(picture.read(), provider="test") == (256, 256)
    with urllib.request.urlopen(f"{server.url}/healthz", timeout=10) as health:
        assert health.read() == b"ok\n"


def test_engine_is_chosen_by_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SORIFLOW_IMAGE_OPENAI_API_KEY", "k")
    openai_engine = create_engine(ImageSettings())
    assert isinstance(openai_engine, OpenAIImageEngine)
    assert (openai_engine.model, openai_engine.api_key) == ("gpt-image-1", "k")
    monkeypatch.setenv("SORIFLOW_IMAGE_ENGINE", "bedrock")
    monkeypatch.setenv("SORIFLOW_IMAGE_BEDROCK_MODEL_ID", "stability.stable-image-core-v1:1")
    monkeypatch.setenv("SORIFLOW_AWS_REGION", "us-west-2")
    bedrock = create_engine(ImageSettings())
    assert isinstance(bedrock, BedrockImageEngine)
    assert (bedrock.family, bedrock.region) == ("stability", "us-west-2")
    assert parse_size(ImageSettings().image_size) == (1024, 1024)


def test_gateway_settings_carry_the_image_settings() -> None:
    from soriflow.gateway.settings import Settings

    assert "image_engine" in Settings.model_fields


def test_cli_generates_a_picture(
    server: LocalImageServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from soriflow.cli.main import app

    monkeypatch.setenv("SORIFLOW_IMAGE_OPENAI_BASE_URL", f"{server.url}/v1")
    monkeypatch.setenv("SORIFLOW_IMAGE_OPENAI_API_KEY", API_KEY)
    out = tmp_path / "fox.png"
    result = CliRunner().invoke(
        app, ["images", "generate", "A fox at night", "-o", str(out), "--size", "1536x1024"]
    )
    assert result.exit_code == 0, result.output
    assert read_png(out.read_bytes(), provider="test") == (1536, 1024)
    refused = CliRunner().invoke(app, ["images", "generate", "A forbidden fox", "-o", str(out)])
    assert refused.exit_code == 1
    assert "INVALID_ARGUMENT" in refused.output
