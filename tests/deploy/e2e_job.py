"""One Soriflow job end to end, run inside the cluster by tests/deploy/test_cluster.py.

It needs only the runtime (`soriflow` and its generated stubs), so it runs in the
gateway image: speech is synthesized by the TTS service, submitted to the gateway
as inline audio on the `transcribe` pipeline, and the job is followed until it
ends. Exit status 0 only when the job succeeded with a non-empty transcript.
It also runs against a local stack (`soriflow up`):

    python tests/deploy/e2e_job.py --gateway 127.0.0.1:50050 --tts 127.0.0.1:50054
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

TEXT = "Hello world. This is a test of the speech pipeline."


def create_buckets(uris: list[str]) -> None:
    """Buckets for a fresh S3-compatible endpoint (moto in the cluster test)."""
    import boto3

    from soriflow.config import CommonSettings

    settings = CommonSettings()
    s3 = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.aws_region)
    for uri in uris:
        bucket = uri.removeprefix("s3://").split("/", 1)[0]
        s3.create_bucket(Bucket=bucket)
        print(f"created bucket {bucket}", flush=True)


async def run_job(gateway: str, tts: str, pipeline: str, timeout: float) -> dict[str, object]:
    from soriflow.client import open_channel
    from soriflow.v1 import audio_pb2, gateway_pb2, gateway_pb2_grpc, tts_pb2, tts_pb2_grpc

    async with open_channel(tts) as channel:
        speech = await tts_pb2_grpc.TextToSpeechServiceStub(channel).Synthesize(
            tts_pb2.SynthesizeRequest(
                text=TEXT,
                audio_config=tts_pb2.AudioOutputConfig(
                    encoding=audio_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hz=16000
                ),
            ),
            timeout=120,
        )
    print(f"synthesized {speech.duration_ms} ms with {speech.engine}", flush=True)
    terminal = {
        gateway_pb2.JOB_STATE_SUCCEEDED,
        gateway_pb2.JOB_STATE_PARTIAL,
        gateway_pb2.JOB_STATE_FAILED,
        gateway_pb2.JOB_STATE_CANCELLED,
    }
    async with open_channel(gateway) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        submitted = await stub.SubmitJob(
            gateway_pb2.SubmitJobRequest(
                audio=audio_pb2.AudioInput(content=speech.audio_content),
                pipeline=pipeline,
                filename="e2e.wav",
                metadata={"source": "soriflow-e2e"},
            ),
            timeout=60,
        )
        job = submitted.job
        print(f"submitted job {job.job_id} ({pipeline})", flush=True)
        deadline = time.monotonic() + timeout
        while job.state not in terminal:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"job {job.job_id} still {gateway_pb2.JobState.Name(job.state)} after {timeout}s"
                )
            await asyncio.sleep(2)
            job = (await stub.GetJob(gateway_pb2.GetJobRequest(job_id=job.job_id), timeout=30)).job
    return {
        "job_id": job.job_id,
        "state": gateway_pb2.JobState.Name(job.state),
        "error": job.error,
        "transcript": job.result.transcript.text,
        "stages": {stage.name: gateway_pb2.StageState.Name(stage.state) for stage in job.stages},
        "outputs": [output.uri for output in job.outputs],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gateway", help="host:port of the gateway")
    parser.add_argument("--tts", help="host:port of the TTS service")
    parser.add_argument("--pipeline", default="transcribe")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--create-buckets", nargs="*", default=[], metavar="S3_URI")
    args = parser.parse_args()
    if args.create_buckets:
        create_buckets(args.create_buckets)
    if not args.gateway:
        return 0
    result = asyncio.run(run_job(args.gateway, args.tts, args.pipeline, args.timeout))
    print(json.dumps(result), flush=True)
    succeeded = result["state"] == "JOB_STATE_SUCCEEDED" and str(result["transcript"]).strip()
    return 0 if succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
