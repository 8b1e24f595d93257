"""Structured logs: one JSON object per line, with the request id of the RPC being served."""

from __future__ import annotations

import json
import logging

import grpc
import pytest

from soriflow.client import open_channel
from soriflow.logs import JsonFormatter, configure_logging, request_id_var
from soriflow.server import running
from soriflow.v1 import stt_pb2, stt_pb2_grpc
from tests.soriflow.test_server import ProbeService, settings


def test_json_lines_carry_level_message_fields_and_exceptions() -> None:
    formatter = JsonFormatter("stt")
    record = logging.makeLogRecord(
        {"msg": "decoded %d s", "args": (3,), "levelname": "INFO", "name": "x", "audio_ms": 3000}
    )
    token = request_id_var.set("abc123")
    try:
        entry = json.loads(formatter.format(record))
    finally:
        request_id_var.reset(token)
    assert entry["message"] == "decoded 3 s"
    assert (entry["level"], entry["service"], entry["request_id"], entry["audio_ms"]) == (
        "INFO",
        "stt",
        "abc123",
        3000,
    )
    assert entry["time"].endswith("Z")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        failed = logging.makeLogRecord({"msg": "failed", "exc_info": sys.exc_info()})
    assert "ValueError: boom" in json.loads(formatter.format(failed))["exception"]


async def test_rpc_log_lines_carry_the_callers_request_id(capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json", service="probe")
    try:
        async with running(ProbeService(settings())) as server, open_channel(server.address) as channel:
            await stt_pb2_grpc.SpeechToTextServiceStub(channel).ListModels(
                stt_pb2.ListModelsRequest(), metadata=(("x-request-id", "req-42"),)
            )
            with pytest.raises(grpc.aio.AioRpcError):
                await stt_pb2_grpc.SpeechToTextServiceStub(channel).Recognize(stt_pb2.RecognizeRequest())
    finally:
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    rpc = [e for e in lines if e.get("grpc_method") == "ListModels"]
    assert rpc
    assert (rpc[0]["request_id"], rpc[0]["grpc_code"], rpc[0]["service"]) == ("req-42", "OK", "probe")
    assert any(e.get("grpc_method") == "Recognize" and e["grpc_code"] == "UNIMPLEMENTED" for e in lines)
