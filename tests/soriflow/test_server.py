"""The runtime's gRPC server, for real on loopback: health, errors, metrics, auth, TLS, shutdown."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from soriflow.client import check_health, open_channel
from soriflow.config import ServiceSettings
from soriflow.errors import InvalidArgument, NotFound, ResourceExhausted
from soriflow.interceptors import retry_after_from
from soriflow.server import GrpcService, Server, running
from soriflow.v1 import stt_pb2, stt_pb2_grpc

STT = "soriflow.v1.SpeechToTextService"


class ProbeServicer(stt_pb2_grpc.SpeechToTextServiceServicer):
    """A servicer whose behaviour each test sets, to exercise the runtime around it."""

    def __init__(self) -> None:
        self.behaviour: Callable[[], Any] = lambda: stt_pb2.ListModelsResponse()
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def ListModels(self, request: Any, context: Any) -> Any:
        self.started.set()
        result = self.behaviour()
        if asyncio.iscoroutine(result):
            result = await result
        return result

    async def StreamingRecognize(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        async for _ in request_iterator:
            yield stt_pb2.StreamingRecognizeResponse(audio_processed_ms=1)
            raise InvalidArgument("audio_content before streaming_config: send the config first")


class ProbeService(GrpcService[ServiceSettings]):
    name = "probe"
    service_names = (STT,)

    def __init__(self, settings: ServiceSettings, loaded: asyncio.Event | None = None) -> None:
        super().__init__(settings)
        self.servicer = ProbeServicer()
        self.loaded = loaded

    def register(self, server: grpc.aio.Server) -> None:
        stt_pb2_grpc.add_SpeechToTextServiceServicer_to_server(self.servicer, server)

    async def start(self) -> None:
        if self.loaded is not None:
            await self.loaded.wait()


def settings(**overrides: Any) -> ServiceSettings:
    base: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "metrics_port": 0, "log_format": "text"}
    return ServiceSettings(**(base | overrides))


async def list_models(address: str, **channel_kwargs: Any) -> Any:
    async with open_channel(address, **channel_kwargs) as channel:
        return await stt_pb2_grpc.SpeechToTextServiceStub(channel).ListModels(
            stt_pb2.ListModelsRequest(), timeout=5
        )


async def test_health_is_not_serving_until_models_load_and_rpcs_wait_for_it() -> None:
    loaded = asyncio.Event()
    server = Server(ProbeService(settings(), loaded))
    await server.start()
    try:
        async with open_channel(server.address) as channel:
            assert await check_health(channel) == "NOT_SERVING"
            assert await check_health(channel, STT) == "NOT_SERVING"
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stt_pb2_grpc.SpeechToTextServiceStub(channel).ListModels(stt_pb2.ListModelsRequest())
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "loading" in (err.value.details() or "")
            loaded.set()
            await server.wait_ready(5)
            assert await check_health(channel) == "SERVING"
            assert await check_health(channel, STT) == "SERVING"
            await stt_pb2_grpc.SpeechToTextServiceStub(channel).ListModels(stt_pb2.ListModelsRequest())
    finally:
        await server.stop(0)


async def test_failed_load_is_reported_not_served() -> None:
    class Broken(ProbeService):
        async def start(self) -> None:
            raise RuntimeError("model.bin is corrupt")

    server = Server(Broken(settings()))
    await server.start()
    with pytest.raises(RuntimeError, match=r"model\.bin is corrupt"):
        await server.wait_ready(5)
    async with open_channel(server.address) as channel:
        assert await check_health(channel) == "NOT_SERVING"
    await server.stop(0)


@pytest.mark.parametrize(
    ("raised", "code", "text"),
    [
        (InvalidArgument("audio is empty"), grpc.StatusCode.INVALID_ARGUMENT, "audio is empty"),
        (NotFound("voice 'x' not found"), grpc.StatusCode.NOT_FOUND, "voice 'x' not found"),
        (
            ResourceExhausted("queue full", retry_after_s=2.5),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "queue full",
        ),
    ],
)
async def test_typed_errors_map_to_status_codes(raised: Exception, code: grpc.StatusCode, text: str) -> None:
    service = ProbeService(settings())

    def boom() -> None:
        raise raised

    service.servicer.behaviour = boom
    async with running(service) as server:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await list_models(server.address)
    assert err.value.code() == code
    assert err.value.details() == text
    if isinstance(raised, ResourceExhausted):
        assert retry_after_from(err.value) == pytest.approx(2.5)


async def test_unexpected_errors_are_internal_with_a_request_id_and_no_traceback() -> None:
    service = ProbeService(settings())

    def boom() -> None:
        raise KeyError("secret internal detail")

    service.servicer.behaviour = boom
    async with running(service) as server:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await list_models(server.address)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    details = err.value.details() or ""
    assert "request id" in details
    assert "secret internal detail" not in details
    assert "Traceback" not in details
    request_id = dict(err.value.trailing_metadata() or ())["x-request-id"]
    assert request_id in details


async def test_errors_in_a_stream_map_to_status_codes() -> None:
    async with running(ProbeService(settings())) as server, open_channel(server.address) as channel:
        stub = stt_pb2_grpc.SpeechToTextServiceStub(channel)

        async def requests() -> AsyncIterator[Any]:
            yield stt_pb2.StreamingRecognizeRequest(audio_content=b"\0\0")

        call = stub.StreamingRecognize(requests())
        first = await call.read()
        assert first.audio_processed_ms == 1
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call.read()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "config first" in (err.value.details() or "")


def sample(exposition: str, series: str) -> float:
    """The value of one series in Prometheus text format (0 when absent)."""
    for line in exposition.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_endpoint_counts_requests_by_method_and_code() -> None:
    service = ProbeService(settings())
    async with running(service) as server:

        async def scrape() -> str:
            url = f"http://127.0.0.1:{server.metrics_port}/metrics"
            body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
            return body.decode()

        await list_models(server.address)
        before = await scrape()

        async def held() -> Any:
            await service.servicer.release.wait()
            return stt_pb2.ListModelsResponse()

        service.servicer.behaviour = held
        service.servicer.started.clear()
        in_flight = asyncio.create_task(list_models(server.address))
        await asyncio.wait_for(service.servicer.started.wait(), 5)
        during = await scrape()
        service.servicer.release.set()
        await in_flight
        service.servicer.behaviour = lambda: (_ for _ in ()).throw(NotFound("no such model"))
        with pytest.raises(grpc.aio.AioRpcError):
            await list_models(server.address)
        text = await scrape()
    labels = f'method="ListModels",service="{STT}"'
    assert sample(during, f"soriflow_grpc_requests_in_flight{{{labels}}}") == 1
    assert sample(text, f"soriflow_grpc_requests_in_flight{{{labels}}}") == 0
    # Counters are per process and other tests call ListModels too: compare with the first scrape.
    ok, not_found = f'{{code="OK",{labels}}}', f'{{code="NOT_FOUND",{labels}}}'
    assert (
        sample(text, f"soriflow_grpc_requests_total{ok}")
        - sample(before, f"soriflow_grpc_requests_total{ok}")
        == 1
    )
    assert (
        sample(text, f"soriflow_grpc_requests_total{not_found}")
        - sample(before, f"soriflow_grpc_requests_total{not_found}")
        == 1
    )
    assert sample(text, f"soriflow_grpc_request_duration_seconds_count{not_found}") >= 1
    assert 'soriflow_service_ready{service="probe"} 1.0' in text


async def list_services(channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...] = ()) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def ask() -> AsyncIterator[Any]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async for response in stub.ServerReflectionInfo(ask(), metadata=metadata):
        return {s.name for s in response.list_services_response.service}
    raise AssertionError("no reflection response")


async def test_reflection_lists_the_service() -> None:
    async with running(ProbeService(settings())) as server, open_channel(server.address) as channel:
        names = await list_services(channel)
    assert STT in names
    assert "grpc.health.v1.Health" in names


async def test_reflection_needs_the_token_when_one_is_set() -> None:
    async with (
        running(ProbeService(settings(auth_token="s3cret"))) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await list_services(channel)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert STT in await list_services(channel, (("authorization", "Bearer s3cret"),))


async def test_open_channel_sends_the_token_on_streaming_calls_too() -> None:
    """Reflection is a bidirectional stream: the channel's token must reach it like a unary call's."""
    async with (
        running(ProbeService(settings(auth_token="s3cret"))) as server,
        open_channel(server.address, token="s3cret") as channel,
    ):
        assert STT in await list_services(channel)


async def test_bearer_token_is_required_except_for_health() -> None:
    async with running(ProbeService(settings(auth_token="s3cret"))) as server:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await list_models(server.address)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await list_models(server.address, token="wrong")
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "Bearer" in (err.value.details() or "")
        await list_models(server.address, token="s3cret")
        async with grpc.aio.insecure_channel(server.address) as channel:  # probes carry no token
            response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_deadline_cancels_the_work() -> None:
    service = ProbeService(settings())
    cancelled = asyncio.Event()

    async def slow() -> Any:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    service.servicer.behaviour = slow
    async with running(service) as server, open_channel(server.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stt_pb2_grpc.SpeechToTextServiceStub(channel).ListModels(
                stt_pb2.ListModelsRequest(), timeout=0.3
            )
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await asyncio.wait_for(cancelled.wait(), 5)


async def test_graceful_stop_drains_in_flight_and_refuses_new() -> None:
    service = ProbeService(settings())

    async def held() -> Any:
        await service.servicer.release.wait()
        return stt_pb2.ListModelsResponse(models=[stt_pb2.SpeechModel(name="drained")])

    service.servicer.behaviour = held
    server = Server(service)
    await server.start(wait_ready=True)
    address = server.address
    in_flight = asyncio.create_task(list_models(address))
    await asyncio.wait_for(service.servicer.started.wait(), 5)
    stopping = asyncio.create_task(server.stop(grace=10))
    await asyncio.sleep(0.3)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await list_models(address)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    service.servicer.release.set()
    response = await asyncio.wait_for(in_flight, 10)
    assert response.models[0].name == "drained"
    await stopping


async def test_message_size_cap_is_enforced() -> None:
    service = ProbeService(settings(max_message_bytes=1024))
    async with running(service) as server, open_channel(server.address) as channel:
        stub = stt_pb2_grpc.SpeechToTextServiceStub(channel)

        async def big() -> AsyncIterator[Any]:
            yield stt_pb2.StreamingRecognizeRequest(audio_content=b"x" * 4096)

        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in stub.StreamingRecognize(big()):
                pass
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # The cap applies to what the server sends too, not only to what it receives.
        service.servicer.behaviour = lambda: stt_pb2.ListModelsResponse(
            models=[stt_pb2.SpeechModel(name="m" * 4096)]
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListModels(stt_pb2.ListModelsRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# --- TLS -------------------------------------------------------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject: str, key: Any, issuer_key: Any, issuer: x509.Name | None, *, ca: bool) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate and a client certificate, made for this test run."""
    folder = tmp_path_factory.mktemp("pki")
    ca_key = _key()
    ca_cert = _cert("soriflow-test-ca", ca_key, ca_key, None, ca=True)
    files: dict[str, Path] = {}

    def write(name: str, data: bytes) -> None:
        files[name] = folder / name
        files[name].write_bytes(data)

    write("ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM))
    for who in ("server", "client"):
        key = _key()
        cert = _cert(who, key, ca_key, ca_cert.subject, ca=False)
        write(f"{who}.pem", cert.public_bytes(serialization.Encoding.PEM))
        write(
            f"{who}.key",
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
    return files


async def test_tls_handshake_with_generated_certificates(pki: dict[str, Path]) -> None:
    service = ProbeService(settings(tls_cert_file=pki["server.pem"], tls_key_file=pki["server.key"]))
    async with running(service) as server:
        client = ServiceSettings(tls_ca_file=pki["ca.pem"])
        await list_models(f"localhost:{server.port}", settings=client)
        with pytest.raises(grpc.aio.AioRpcError) as err:  # plaintext client cannot talk to a TLS server
            await list_models(f"localhost:{server.port}")
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_requires_a_client_certificate(pki: dict[str, Path]) -> None:
    service = ProbeService(
        settings(tls_cert_file=pki["server.pem"], tls_key_file=pki["server.key"], tls_ca_file=pki["ca.pem"])
    )
    async with running(service) as server:
        address = f"localhost:{server.port}"
        with_cert = ServiceSettings(
            tls_ca_file=pki["ca.pem"], tls_cert_file=pki["client.pem"], tls_key_file=pki["client.key"]
        )
        await list_models(address, settings=with_cert)
        without_cert = ServiceSettings(tls_ca_file=pki["ca.pem"])
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await list_models(address, settings=without_cert)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_request_whose_deadline_passed_while_queued_is_not_run() -> None:
    """A busy server must not start work nobody waits for any more.

    gRPC core already drops most such calls before dispatch; the interceptor's
    own check covers the ones dispatched just before their deadline. This pins
    the behaviour users rely on, whichever layer provides it.
    """
    import time

    from soriflow.server import ThreadedServer

    calls: list[float] = []

    def block_the_loop() -> Any:
        calls.append(time.monotonic())
        if len(calls) == 1:
            time.sleep(1.5)  # stands in for a servicer hogging its event loop
        return stt_pb2.ListModelsResponse()

    server = ThreadedServer(lambda: ProbeService(settings(metrics_port=None)), name="probe").start(30)
    server.service.servicer.behaviour = block_the_loop
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = stt_pb2_grpc.SpeechToTextServiceStub(channel)
            first = stub.ListModels.future(stt_pb2.ListModelsRequest(), timeout=10)
            while not calls:
                time.sleep(0.01)
            with pytest.raises(grpc.RpcError) as err:
                stub.ListModels(stt_pb2.ListModelsRequest(), timeout=0.3)
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            first.result()
            time.sleep(0.3)
        assert len(calls) == 1, "the expired request reached the servicer"
    finally:
        server.stop()


def test_caps_and_keepalive_come_from_settings() -> None:
    server = Server(
        ProbeService(settings(max_message_bytes=2048, keepalive_time_s=7.5, keepalive_timeout_s=2.0))
    )
    options = dict(server._grpc_options())
    assert options["grpc.max_receive_message_length"] == 2048
    assert options["grpc.max_send_message_length"] == 2048
    assert options["grpc.keepalive_time_ms"] == 7500
    assert options["grpc.keepalive_timeout_ms"] == 2000
    # Our own clients ping every 30 s: well above what the server tolerates, so no GOAWAY.
    assert options["grpc.http2.min_ping_interval_without_data_ms"] < 30_000
