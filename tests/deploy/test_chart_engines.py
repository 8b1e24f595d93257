"""Engines whose model or API lives elsewhere, as the chart configures them: the summarizer's
`openai` engine (a vLLM/Ollama/llama.cpp server; key from a Secret file; no GPU in its pod) and
`llama-cpp` engine (the `-llama` image), the gateway's image engines (OpenAI with its key from a
Secret, Bedrock through IRSA) and Amazon Polly for TTS.

Beyond the render, each is started from the rendered settings against a local server that
speaks the real wire protocol: a real llama.cpp server (OpenAI-compatible) for the summarizer,
the image stand-in (OpenAI Images API and Bedrock InvokeModel) for the gateway, and the Polly
stand-in of the TTS tests. Mounted Secret files are placed where the test can read them, by
the pod's own volume and mount.
"""

from __future__ import annotations

import asyncio
import secrets as secrets_module
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import FULLNAME, ChartRenderer, Rendered, merged, value_set
from tests.deploy.test_chart_config import settings_of

VLLM = "http://vllm.llm.svc:8000/v1"
OPENAI_SUMMARIZER = {
    "summarizer": {
        "engine": "openai",
        "model": "meta-llama/Llama-3.2-1B-Instruct",
        "openai": {"baseUrl": VLLM, "apiKey": {"existingSecret": "llm-key"}},
    }
}


def rejection(chart: ChartRenderer, values: dict[str, Any]) -> str:
    import helm_python as helm

    with pytest.raises((helm.HelmValuesError, helm.HelmRenderError)) as info:
        chart.render(values)
    return str(info.value)


def env_entries(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def gpu_requested(rendered: Rendered, component: str) -> bool:
    limits = rendered.container(component).get("resources", {}).get("limits", {})
    return any(k.startswith("nvidia.com/") for k in limits)


def resolved_env(rendered: Rendered, component: str, secrets: dict[str, str]) -> dict[str, str]:
    """The SORIFLOW_* environment of a component's container, Secret references resolved."""
    env = dict(rendered.config(component))
    for entry in rendered.container(component).get("env", []):
        if not entry["name"].startswith("SORIFLOW_"):
            continue
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = secrets.get(f"{ref['name']}/{ref['key']}", "from-a-secret")
    return env


def mounted_file(
    rendered: Rendered, component: str, path: str, secrets: dict[str, str], folder: Path
) -> Path:
    """The file the pod sees at `path`, made from its Secret volume's item and the test's value."""
    spec = rendered.pod_spec(component)
    mount = next(
        m
        for m in rendered.container(component)["volumeMounts"]
        if path.startswith(m["mountPath"].rstrip("/") + "/")
    )
    assert mount.get("readOnly") is True
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])["secret"]
    relative = path.removeprefix(mount["mountPath"].rstrip("/") + "/")
    [item] = [i for i in volume["items"] if i["path"] == relative]
    target = folder / relative
    target.write_text(secrets[f"{volume['secretName']}/{item['key']}"] + "\n")
    return target


def local_server_env(env: dict[str, str], folder: Path) -> dict[str, str]:
    """What differs on this machine from the pod: loopback, a free port, a writable cache."""
    return env | {
        "SORIFLOW_HOST": "127.0.0.1",
        "SORIFLOW_PORT": "0",
        "SORIFLOW_METRICS_PORT": "",
        "SORIFLOW_CACHE_DIR": str(folder / "cache"),
        "SORIFLOW_LOG_FORMAT": "text",
    }


# --- the summarizer's remote engine ---------------------------------------------------------------


def test_a_remote_llm_gets_its_name_url_and_key_file_and_no_gpu(chart: ChartRenderer) -> None:
    rendered = chart.render(OPENAI_SUMMARIZER)
    config = rendered.config("summarizer")
    assert config["SORIFLOW_SUMMARIZER_ENGINE"] == "openai"
    assert config["SORIFLOW_SUMMARIZER_MODEL"] == "meta-llama/Llama-3.2-1B-Instruct"  # as is
    assert config["SORIFLOW_SUMMARIZER_OPENAI_BASE_URL"] == VLLM
    assert config["SORIFLOW_SUMMARIZER_DEVICE"] == "cpu"
    key_file = config["SORIFLOW_SUMMARIZER_OPENAI_API_KEY_FILE"]
    spec = rendered.pod_spec("summarizer")
    [volume] = [v for v in spec["volumes"] if v["name"] == "llm-api-key"]
    assert volume["secret"] == {
        "secretName": "llm-key",
        "defaultMode": 0o440,
        "items": [{"key": "api-key", "path": "api-key"}],
    }
    [mount] = [m for m in rendered.container("summarizer")["volumeMounts"] if m["name"] == "llm-api-key"]
    assert key_file == f"{mount['mountPath']}/api-key"
    assert mount["readOnly"] is True
    # the key never reaches the environment or a ConfigMap
    assert "SORIFLOW_SUMMARIZER_OPENAI_API_KEY" not in env_entries(rendered.container("summarizer"))
    assert "SORIFLOW_SUMMARIZER_OPENAI_API_KEY" not in config
    # no GPU for a model that runs elsewhere: no limit, no GPU tolerations, the CPU image
    assert not gpu_requested(rendered, "summarizer")
    assert gpu_requested(rendered, "stt")  # the other GPU service keeps its GPU
    assert "tolerations" not in spec
    assert "runtimeClassName" not in spec
    assert rendered.container("summarizer")["image"].endswith(":0.1.0-cpu")
    assert (
        "(model meta-llama/Llama-3.2-1B-Instruct at http://vllm.llm.svc:8000/v1: no GPU here)"
        in rendered.notes
    )


@pytest.mark.parametrize(
    "models",
    [
        {"source": "pvc", "pvc": {"claimName": "soriflow-models"}},
        {"source": "s3", "s3": {"prefix": "s3://acme-models/soriflow/"}},
    ],
    ids=["pvc", "s3"],
)
def test_a_remote_model_name_is_never_a_model_path(chart: ChartRenderer, models: dict[str, Any]) -> None:
    rendered = chart.render(merged(OPENAI_SUMMARIZER, {"models": models}))
    assert rendered.config("summarizer")["SORIFLOW_SUMMARIZER_MODEL"] == "meta-llama/Llama-3.2-1B-Instruct"
    assert "initContainers" not in rendered.pod_spec("summarizer")  # nothing to copy from S3
    local = chart.render({"models": models})  # while a local model is placed under the source
    assert local.config("summarizer")["SORIFLOW_SUMMARIZER_MODEL"] != "smollm2-135m-instruct"


def test_ollama_names_pass_for_a_remote_model_only(chart: ChartRenderer) -> None:
    ollama = merged(OPENAI_SUMMARIZER, {"summarizer": {"model": "llama3.2:1b"}})
    assert chart.render(ollama).config("summarizer")["SORIFLOW_SUMMARIZER_MODEL"] == "llama3.2:1b"
    assert "at '/summarizer/model'" in rejection(chart, {"summarizer": {"model": "llama3.2:1b"}})
    assert "at '/summarizer/model'" in rejection(chart, merged(ollama, {"summarizer": {"model": "a b"}}))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"summarizer": {"engine": "openai", "model": "qwen2.5"}},
            "summarizer.engine=openai needs summarizer.openai.baseUrl: the chat server's OpenAI-compatible",
        ),
        (
            merged(OPENAI_SUMMARIZER, {"summarizer": {"model": "s3://acme-models/llama/"}}),
            "summarizer.model=s3://acme-models/llama/ is a model file, but with summarizer.engine=openai the "
            "model is the name the chat server serves",
        ),
        (
            merged(OPENAI_SUMMARIZER, {"summarizer": {"adapter": "callsummary-lora"}}),
            "summarizer.adapter is loaded by the causal-lm and seq2seq engines only, not by engine openai",
        ),
        (
            {"summarizer": {"engine": "llama-cpp", "gpu": {"enabled": False}, "adapter": "lora"}},
            "not by engine llama-cpp",
        ),
        (
            {"summarizer": {"engine": "llama-cpp"}},
            "summarizer.engine=llama-cpp runs llama.cpp in-process on CPU",
        ),
    ],
    ids=["no-url", "file-model", "adapter-openai", "adapter-llama", "llama-gpu"],
)
def test_engine_relations_are_refused_with_what_to_set(
    chart: ChartRenderer, values: dict[str, Any], expected: str
) -> None:
    message = rejection(chart, values)
    assert expected in message


def test_the_url_may_come_from_settings_and_bad_urls_are_refused(chart: ChartRenderer) -> None:
    by_setting = {
        "summarizer": {"engine": "openai", "model": "m", "settings": {"summarizer_openai_base_url": VLLM}}
    }
    assert chart.render(by_setting).config("summarizer")["SORIFLOW_SUMMARIZER_OPENAI_BASE_URL"] == VLLM
    bad = merged(OPENAI_SUMMARIZER, {"summarizer": {"openai": {"baseUrl": "vllm:8000"}}})
    assert "at '/summarizer/openai/baseUrl'" in rejection(chart, bad)


def test_llama_cpp_runs_the_llama_image_on_cpu(chart: ChartRenderer) -> None:
    from scripts import images

    rendered = chart.render(value_set("llama"))
    assert rendered.config("summarizer")["SORIFLOW_SUMMARIZER_ENGINE"] == "llama-cpp"
    assert rendered.config("summarizer")["SORIFLOW_SUMMARIZER_DEVICE"] == "cpu"
    assert rendered.config("summarizer")["SORIFLOW_SUMMARIZER_MODEL"] == "smollm2-135m-instruct"
    image = rendered.container("summarizer")["image"]
    assert image == images.image_name(
        "summarizer", registry="ghcr.io/soriflow", tag="0.1.0", gpu=False, llama=True
    )
    assert image.endswith(":0.1.0-cpu-llama")
    assert not gpu_requested(rendered, "summarizer")
    # the other components keep their images
    assert rendered.container("stt")["image"].endswith("soriflow-stt:0.1.0")


# --- the gateway's image engines -------------------------------------------------------------------


def test_image_engine_settings_and_the_openai_key_by_reference(chart: ChartRenderer) -> None:
    rendered = chart.render(value_set("remote-engines"))
    config = rendered.config("gateway")
    assert config["SORIFLOW_IMAGE_ENGINE"] == "openai"
    assert config["SORIFLOW_IMAGE_OPENAI_MODEL"] == "gpt-image-1"
    assert config["SORIFLOW_IMAGE_SIZE"] == "1536x1024"  # from gateway.settings
    assert "SORIFLOW_IMAGE_OPENAI_BASE_URL" not in config  # OpenAI itself
    key = env_entries(rendered.container("gateway"))["SORIFLOW_IMAGE_OPENAI_API_KEY"]
    assert key["valueFrom"] == {"secretKeyRef": {"name": "soriflow-openai", "key": "api-key"}}
    bedrock = chart.render(value_set("llama")).config("gateway")
    assert bedrock["SORIFLOW_IMAGE_ENGINE"] == "bedrock"
    assert bedrock["SORIFLOW_IMAGE_BEDROCK_MODEL_ID"] == "amazon.nova-canvas-v1:0"
    assert bedrock["SORIFLOW_IMAGE_BEDROCK_REGION"] == "us-east-1"
    assert not any(k.startswith("SORIFLOW_IMAGE_OPENAI") for k in bedrock)
    assert "SORIFLOW_IMAGE_OPENAI_API_KEY" not in env_entries(chart.render().container("gateway"))
    assert chart.render().config("gateway")["SORIFLOW_IMAGE_ENGINE"] == "openai"


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"gateway": {"images": {"engine": "dall-e"}}}, "/gateway/images/engine"),
        ({"gateway": {"images": {"openai": {"baseUrl": "images.local"}}}}, "/gateway/images/openai/baseUrl"),
        ({"gateway": {"images": {"bedrock": {"region": "Virginia"}}}}, "/gateway/images/bedrock/region"),
        ({"gateway": {"images": {"openai": {"apiKey": "sk-live"}}}}, "/gateway/images/openai/apiKey"),
        ({"gateway": {"images": {"openai": {"key": "sk-live"}}}}, "additional properties 'key' not allowed"),
    ],
    ids=["engine", "url", "region", "key-literal", "key-field"],
)
def test_image_values_are_checked(chart: ChartRenderer, values: dict[str, Any], where: str) -> None:
    message = rejection(chart, values)
    assert where in message
    assert "sk-live" not in message


@pytest.fixture(scope="module")
def image_server() -> Iterator[Any]:
    from soriflow.gateway.images.local import LocalImageServer

    with LocalImageServer(api_key="sk-chart-test") as server:
        yield server


def test_the_gateway_makes_a_picture_with_the_chart_s_openai_settings(
    chart: ChartRenderer, image_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from soriflow.gateway.images import ImageRequest, create_engine, parse_size

    values = merged(
        value_set("remote-engines"),
        {"gateway": {"images": {"openai": {"baseUrl": f"{image_server.url}/v1"}}}},
    )
    rendered = chart.render(values)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    env = resolved_env(rendered, "gateway", {"soriflow-openai/api-key": "sk-chart-test"})
    settings = settings_of("gateway", env, monkeypatch)
    width, height = parse_size(settings.image_size)
    engine = create_engine(settings)
    try:
        picture = engine.generate(ImageRequest("A fox reading under the moon", width, height))
    finally:
        engine.close()
    assert picture.png.startswith(b"\x89PNG")
    assert (picture.width, picture.height, picture.engine, picture.model) == (
        1536,
        1024,
        "openai",
        "gpt-image-1",
    )


def test_the_gateway_makes_a_picture_with_the_chart_s_bedrock_settings(
    chart: ChartRenderer, image_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bedrock through boto3's credential chain (IRSA in the pod; test keys here)."""
    from soriflow.gateway.images import ImageRequest, create_engine

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    values = merged(
        value_set("llama"), {"gateway": {"images": {"bedrock": {"endpointUrl": image_server.url}}}}
    )
    env = resolved_env(chart.render(values), "gateway", {})
    engine = create_engine(settings_of("gateway", env, monkeypatch))
    try:
        picture = engine.generate(ImageRequest("A lighthouse at dawn", 1024, 1024))
    finally:
        engine.close()
    assert picture.png.startswith(b"\x89PNG")
    assert (picture.engine, picture.model) == ("bedrock", "amazon.nova-canvas-v1:0")


# --- Amazon Polly ----------------------------------------------------------------------------------


def test_polly_uses_the_release_s_irsa_role_and_region(
    chart: ChartRenderer, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered = chart.render(value_set("remote-engines"))
    account = rendered.get("ServiceAccount", FULLNAME)
    assert rendered.pod_spec("tts")["serviceAccountName"] == FULLNAME
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(":role/soriflow")
    tts_env = env_entries(rendered.container("tts"))
    assert not [name for name in tts_env if name.startswith("AWS_")]  # no static keys
    settings = settings_of("tts", resolved_env(rendered, "tts", {}), monkeypatch)
    assert settings.tts_engines[0] == "polly"
    assert (settings.tts_polly_region or settings.aws_region) == "ap-northeast-2"


@pytest.mark.slow
def test_the_tts_service_speaks_with_polly_as_the_chart_configures_it(
    chart: ChartRenderer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rendered TTS settings (Polly first), with a VPC-endpoint-style override pointing at
    the local server that speaks Polly's REST-JSON protocol; boto3 signs with test keys."""
    from soriflow.client import open_channel
    from soriflow.server import running
    from soriflow.tts.service import create_service
    from soriflow.v1 import tts_pb2, tts_pb2_grpc
    from tests.tts.fake_polly import FakePolly

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSORIFLOWTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    fake = FakePolly().start()
    try:
        values = merged(
            value_set("remote-engines"), {"tts": {"settings": {"tts_polly_endpoint_url": fake.url}}}
        )
        env = local_server_env(resolved_env(chart.render(values), "tts", {}), tmp_path)
        settings = settings_of("tts", env, monkeypatch)

        async def speak() -> Any:
            async with (
                running(create_service(settings)) as server,
                open_channel(server.address, settings) as ch,
            ):
                stub = tts_pb2_grpc.TextToSpeechServiceStub(ch)
                return await stub.Synthesize(
                    tts_pb2.SynthesizeRequest(
                        text="문의하신 내용 확인 후 연락드리겠습니다.",
                        voice=tts_pb2.VoiceSelection(language_code="ko-KR"),
                    ),
                    timeout=60,
                )

        response = asyncio.run(speak())
    finally:
        fake.stop()
    assert (response.engine, response.voice) == ("polly", "Seoyeon")  # the chart's default engine
    assert fake.requests
    assert fake.requests[0]["Engine"] == "neural"  # tts_polly_engines: [neural, ...]
    assert len(response.audio_content) > 1000


# --- the summarizer against a real OpenAI-compatible server ----------------------------------------


@pytest.mark.slow
def test_the_summarizer_summarizes_through_a_real_server_as_the_chart_configures_it(
    chart: ChartRenderer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ci/remote-engines pointed at a real llama.cpp server (OpenAI-compatible, with an API key)
    on loopback: the key reaches the server only through the Secret file the pod mounts."""
    from soriflow.client import open_channel
    from soriflow.server import running
    from soriflow.summarizer.service import create_service
    from soriflow.v1 import summarizer_pb2, summarizer_pb2_grpc
    from tests.summarizer.llama_server import MODEL_ALIAS, llama_server

    key = secrets_module.token_urlsafe(16)
    with llama_server(key) as server:
        values = merged(
            value_set("remote-engines"),
            {"summarizer": {"model": MODEL_ALIAS, "openai": {"baseUrl": server.base_url}}},
        )
        rendered = chart.render(values)
        given = {"soriflow-vllm/api-key": key}
        env = local_server_env(resolved_env(rendered, "summarizer", given), tmp_path)
        key_path = env["SORIFLOW_SUMMARIZER_OPENAI_API_KEY_FILE"]
        env["SORIFLOW_SUMMARIZER_OPENAI_API_KEY_FILE"] = str(
            mounted_file(rendered, "summarizer", key_path, given, tmp_path)
        )
        settings = settings_of("summarizer", env, monkeypatch)

        async def summarize() -> Any:
            async with (
                running(create_service(settings)) as grpc_server,
                open_channel(grpc_server.address, settings) as channel,
            ):
                stub = summarizer_pb2_grpc.SummarizerServiceStub(channel)
                return await stub.Summarize(
                    summarizer_pb2.SummarizeRequest(
                        text="I was rear-ended at a red light this morning. The bumper is cracked and "
                        "the trunk will not close. I want to know whether my policy covers the repair.",
                        style=summarizer_pb2.SUMMARY_STYLE_ABSTRACT,
                        max_output_tokens=32,
                    ),
                    timeout=120,
                )

        response = asyncio.run(summarize())
    assert response.summary.strip()
    # written by the chat server's model, or by the faithful engine after it failed the grounding
    # check; either way the remote engine was called with the key (a refused key fails the RPC)
    assert "openai" in (response.engine, response.rejected_engine), response
