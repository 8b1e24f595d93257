"""The whole system as local processes: what `soriflow up` and `soriflow demo` run.

moto in server mode provides S3, SQS and SNS on loopback (the real AWS wire
protocol, so boto3 and the AWS CLI work against it unchanged), with the input
and output buckets, the job queue with its dead-letter queue, and the
S3 -> SQS notification for every pipeline prefix. Each service is a separate
`soriflow serve` process on its fixed port, waited on through its health
service; beside them `soriflow images serve`, the local stand-in for the image
APIs that the generation pipelines call (it draws the prompt, it is not a
model). A process that dies is reported with the end of its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from soriflow.client import wait_for_serving

log = logging.getLogger("soriflow.stack")

SERVICE_ORDER = ("stt", "tts", "summarizer", "scoring", "images", "gateway", "live")
#: gRPC ports; the live edge and the image stand-in speak HTTP on their own ports instead.
PORTS = {"gateway": 50050, "stt": 50051, "scoring": 50052, "summarizer": 50053, "tts": 50054}
HTTP_PORTS = {"live": 8080, "images": 8089}
METRICS_PORTS = {"gateway": 9150, "stt": 9151, "scoring": 9152, "summarizer": 9153, "tts": 9154, "live": 9155}
#: Key prefixes that trigger jobs (one notification rule each; `reference/` and `submissions/` do not).
TRIGGER_PREFIXES = ("transcribe/", "voice-notes/", "connect/", "calls/", "users/", "pictures/")
#: Schedules the local stack fires although their built-in pipeline leaves them off.
LOCAL_SCHEDULES = ("nightly-story",)
#: The key the gateway sends the local image stand-in (which takes any).
LOCAL_IMAGE_KEY = "soriflow-local"


def generation_engine() -> str:
    """The summarizer engine that writes generate stages' text on the local stack: the bundled
    SmolLM2 in llama.cpp when llama-cpp-python is installed (`make llama`: several times faster
    on a CPU), else the same model in transformers (always installed)."""
    import importlib.util

    return "llama-cpp" if importlib.util.find_spec("llama_cpp") is not None else "causal-lm"


#: Prefixes of the input bucket that services may read besides the triggers (SORIFLOW_READ_URIS).
READ_PREFIXES = (*TRIGGER_PREFIXES, "submissions/", "reference/")


#: Set in each service's environment so it exits when `soriflow up`/`demo` is killed outright.
PARENT_ENV = "SORIFLOW_STACK_PARENT_PID"


def bind_to_parent() -> None:
    """Asks Linux to SIGTERM this process when the stack that started it dies.

    `soriflow up` stops its services itself on Ctrl-C or SIGTERM, but a SIGKILL
    (an OOM kill, a CI timeout) gives it no chance: without this the services
    would keep the fixed ports and the next `soriflow up` would fail. The
    services run in their own session, so terminal signals never reach them
    directly. A no-op outside a stack and on systems without prctl.
    """
    parent = os.environ.get(PARENT_ENV)
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if str(os.getppid()) != parent:  # the stack died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


async def _wait_for_http(url: str, *, timeout: float, interval: float = 0.25) -> None:
    """Polls `url` until it answers 200; TimeoutError after `timeout` seconds."""
    import urllib.request

    def get() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(get):
            return
        await asyncio.sleep(interval)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


class StackError(RuntimeError):
    """A part of the local stack failed to start or died."""


@dataclass
class StackConfig:
    workdir: Path = field(default_factory=lambda: Path(".soriflow"))
    host: str = "127.0.0.1"
    aws_port: int = 4566
    database_url: str | None = None
    input_bucket: str = "soriflow-input"
    output_bucket: str = "soriflow-output"
    queue_name: str = "soriflow-jobs"
    max_receive_count: int = 5
    startup_timeout_s: float = 600.0
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def aws_endpoint(self) -> str:
        return f"http://{self.host}:{self.aws_port}"

    def address(self, service: str) -> str:
        return f"{self.host}:{PORTS.get(service) or HTTP_PORTS[service]}"

    @property
    def live_url(self) -> str:
        """The live-caption page (the WebSocket is `/v1/live` beside it)."""
        return f"http://{self.address('live')}/"


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


class LocalStack:
    """Starts, watches and stops moto and the five services."""

    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config or StackConfig()
        self.processes: dict[str, Process] = {}
        self._moto: Any = None
        self.queue_url = ""
        self.dlq_url = ""

    # --- AWS on loopback -------------------------------------------------------------------------

    def aws_env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": "soriflow",
            "AWS_SECRET_ACCESS_KEY": "soriflow",
            "AWS_DEFAULT_REGION": "us-east-1",
            "SORIFLOW_S3_ENDPOINT_URL": self.config.aws_endpoint,
            "SORIFLOW_AWS_REGION": "us-east-1",
        }

    def client(self, service: str) -> Any:
        import boto3

        env = self.aws_env()
        return boto3.client(
            service,
            endpoint_url=self.config.aws_endpoint,
            region_name="us-east-1",
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )

    def start_aws(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._moto = ThreadedMotoServer(ip_address=self.config.host, port=self.config.aws_port, verbose=False)
        try:
            self._moto.start()
        except OSError as exc:
            raise StackError(
                f"cannot start the local S3/SQS endpoint on port {self.config.aws_port}: {exc}; "
                "is another `soriflow up` running? (use --aws-port)"
            ) from exc
        self.provision_aws()

    def provision_aws(self) -> None:
        """Creates the buckets, the queue with its dead-letter queue, and the S3 -> SQS
        notification of every trigger prefix at the AWS endpoint (moto, here or in a container)."""
        c = self.config
        s3, sqs = self.client("s3"), self.client("sqs")
        for bucket in (c.input_bucket, c.output_bucket):
            s3.create_bucket(Bucket=bucket)
        self.dlq_url = sqs.create_queue(QueueName=f"{c.queue_name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(c.max_receive_count)})
        self.queue_url = sqs.create_queue(
            QueueName=c.queue_name,
            Attributes={
                "RedrivePolicy": redrive,
                "VisibilityTimeout": "120",
                "ReceiveMessageWaitTimeSeconds": "20",
            },
        )["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        rules = [
            {
                "Id": f"soriflow-{prefix.strip('/')}",
                "QueueArn": arn,
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}},
            }
            for prefix in TRIGGER_PREFIXES
        ]
        s3.put_bucket_notification_configuration(
            Bucket=c.input_bucket, NotificationConfiguration={"QueueConfigurations": rules}
        )

    # --- services --------------------------------------------------------------------------------

    def service_env(self, name: str) -> dict[str, str]:
        c = self.config
        env = dict(os.environ)
        env.update(self.aws_env())
        env.update(
            {
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "PYTHONUNBUFFERED": "1",
                "SORIFLOW_HOST": c.host,
                "SORIFLOW_PORT": str(PORTS.get(name) or HTTP_PORTS[name]),
                "SORIFLOW_LOG_FORMAT": "text",
                "SORIFLOW_GRACE_PERIOD_S": "10",
                # What a request may name as s3:// audio: the pipeline inputs, submissions and
                # pronunciation references, nothing else in the account.
                "SORIFLOW_READ_URIS": json.dumps([f"s3://{c.input_bucket}/{p}" for p in READ_PREFIXES]),
                PARENT_ENV: str(os.getpid()),
            }
        )
        if name in METRICS_PORTS:
            env["SORIFLOW_METRICS_PORT"] = str(METRICS_PORTS[name])
        for peer in PORTS:
            env[f"SORIFLOW_{peer.upper()}_ADDRESS"] = c.address(peer)
        if name == "summarizer":  # what the caller's environment sets wins
            env.setdefault("SORIFLOW_SUMMARIZER_ENGINE", generation_engine())
        if name == "gateway":
            c.workdir.mkdir(parents=True, exist_ok=True)
            database = c.database_url or f"sqlite:///{(c.workdir / 'jobs.db').resolve()}"
            env.update(
                {
                    "SORIFLOW_GATEWAY_QUEUE_URL": self.queue_url,
                    "SORIFLOW_GATEWAY_INPUT_URIS": json.dumps(
                        [f"s3://{c.input_bucket}/{p}" for p in TRIGGER_PREFIXES]
                    ),
                    "SORIFLOW_GATEWAY_OUTPUT_URI": f"s3://{c.output_bucket}/results/",
                    "SORIFLOW_GATEWAY_SUBMISSIONS_URI": f"s3://{c.input_bucket}/submissions/",
                    "SORIFLOW_GATEWAY_DATABASE_URL": database,
                    "SORIFLOW_GATEWAY_RECEIVE_WAIT_S": "2",
                    "SORIFLOW_GATEWAY_RETRY_DELAY_S": "5",
                }
            )
            # Pictures from the local stand-in (`soriflow images serve`), not a cloud API, unless the
            # caller's environment names an image service.
            if "SORIFLOW_IMAGE_ENGINE" not in os.environ:
                env["SORIFLOW_IMAGE_ENGINE"] = "openai"
                env["SORIFLOW_IMAGE_OPENAI_BASE_URL"] = f"http://{c.address('images')}/v1"
                env["SORIFLOW_IMAGE_OPENAI_API_KEY"] = LOCAL_IMAGE_KEY
            env.setdefault("SORIFLOW_GATEWAY_ENABLED_SCHEDULES", json.dumps(list(LOCAL_SCHEDULES)))
        env.update(c.extra_env)
        return env

    def start_services(self) -> None:
        logs = self.config.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for name in SERVICE_ORDER:
            log_path = logs / f"{name}.log"
            handle = open(log_path, "wb")  # noqa: SIM115 - kept open for the process's lifetime
            command = ["serve", name]
            if name == "images":  # the stand-in for OpenAI's Images API and Bedrock (not a model)
                command = ["images", "serve", "--host", self.config.host, "--port", str(HTTP_PORTS[name])]
            popen = subprocess.Popen(
                [sys.executable, "-m", "soriflow.cli.main", *command],
                env=self.service_env(name),
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.processes[name] = Process(name, popen, log_path, handle)

    def dead(self) -> list[Process]:
        return [p for p in self.processes.values() if p.popen.poll() is not None]

    def raise_if_dead(self) -> None:
        for process in self.dead():
            raise StackError(
                f"{process.name} exited with code {process.popen.returncode}; the end of "
                f"{process.log_path}:\n{process.tail()}"
            )

    async def wait_healthy(self, on_ready: Any = None) -> None:
        """Waits until every service is SERVING; fails fast when one dies."""

        async def one(name: str) -> None:
            deadline = time.monotonic() + self.config.startup_timeout_s
            while True:
                self.raise_if_dead()
                try:
                    if name in HTTP_PORTS:
                        await _wait_for_http(f"http://{self.config.address(name)}/healthz", timeout=2)
                    else:
                        await wait_for_serving(self.config.address(name), timeout=2, interval=0.25)
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise StackError(
                            f"{name} did not become healthy within "
                            f"{self.config.startup_timeout_s:.0f}s; see {self.processes[name].log_path}"
                        ) from None
                    continue
                if on_ready is not None:
                    on_ready(name)
                return

        await asyncio.gather(*(one(name) for name in self.processes))

    async def start(self, on_ready: Any = None) -> None:
        self.start_aws()
        self.start_services()
        try:
            await self.wait_healthy(on_ready)
        except BaseException:
            self.stop()
            raise

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM to every service (they drain), SIGKILL after the grace period, then moto."""
        for process in self.processes.values():
            if process.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for process in self.processes.values():
            try:
                process.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait(5)
            process.log_file.close()
        self.processes.clear()
        if self._moto is not None:
            self._moto.stop()
            self._moto = None

    def describe(self) -> list[str]:
        c = self.config
        lines = [
            f"  {name:<11} {c.address(name)}  (metrics http://{c.host}:{METRICS_PORTS[name]}/metrics)"
            for name in ("gateway", "stt", "scoring", "summarizer", "tts")
        ]
        lines += [
            f"  live        {c.live_url}  (live captions page; WebSocket ws://{c.address('live')}/v1/live)",
            f"  images      http://{c.address('images')}/v1  (local stand-in for the OpenAI Images and "
            "Bedrock APIs: pictures show their prompt, they are not generated)",
            f"  AWS endpoint {c.aws_endpoint}  (S3, SQS, SNS; any access key works)",
            f"  input        s3://{c.input_bucket}/ (prefixes {', '.join(TRIGGER_PREFIXES)} start jobs)",
            f"  output       s3://{c.output_bucket}/results/",
            f"  queue        {self.queue_url} (dead letters: {self.dlq_url})",
            f"  logs         {c.workdir / 'logs'}/",
            f"  live captions: open {c.live_url} and press Start",
            "  try: soriflow submit voice.wav --pipeline transcribe --watch",
            "       soriflow submit voice.wav --pipeline subtitle-picture --watch  (subtitles, a picture)",
            "       soriflow submit --pipeline nightly-story -p topic='a sleepy owl' --watch",
            "       soriflow schedules   (nightly-story fires at 21:00 Asia/Seoul while the stack runs)",
            f"       aws --endpoint-url {c.aws_endpoint} s3 cp call.wav s3://{c.input_bucket}/connect/call.wav",
        ]
        return lines
