"""The local image server (product code: `soriflow.gateway.images.local`) as the tests' provider."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from soriflow.gateway.images.local import LocalImageServer

API_KEY = "sk-soriflow-test"


@pytest.fixture(scope="module")
def image_server() -> Iterator[LocalImageServer]:
    """OpenAI Images API + Bedrock InvokeModel on loopback; 'forbidden' prompts break the policy."""
    with LocalImageServer(
        api_key=API_KEY, blocked_words=("forbidden",), blocked_output_words=("unseen",)
    ) as server:
        yield server


@pytest.fixture
def server(image_server: LocalImageServer) -> LocalImageServer:
    image_server.reset()
    return image_server


@pytest.fixture
def aws_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3 signs with test keys (the local server checks a SigV4 header is there)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
