"""`soriflow submit`, `jobs`, `watch`, `cancel`, `pipelines` and `schedules`: the job API from a terminal."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from soriflow.gateway.states import JobState, StageState
from soriflow.registry import hook

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

STATE_STYLE: dict[str, str] = {
    JobState.SUCCEEDED: "green",
    JobState.PARTIAL: "yellow",
    JobState.FAILED: "red",
    JobState.CANCELLED: "magenta",
    JobState.RUNNING: "cyan",
    JobState.QUEUED: "white",
    StageState.RETRYING: "yellow",
    StageState.PENDING: "dim",
    StageState.SKIPPED: "dim",
}
ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        help="Gateway address (default: settings' SORIFLOW_GATEWAY_ADDRESS, where `soriflow up` serves)",
    ),
]


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{what} must look like key=value, not {item!r}")
        out[key] = value
    return out


def _name(enum: Any, value: int, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix)


def render_result(job: Any) -> None:
    """What a person wants to see when a job ends: the transcript, summary, score, texts, pictures."""
    from soriflow.v1 import gateway_pb2

    result = job.result
    # Scoring's report through the registry's hook: a service never imports another one.
    print_score = hook("scoring", "print_result") if result.HasField("score") else None
    if print_score is not None:
        print_score(result.score, console, title="Pronunciation")
    elif result.HasField("score"):
        console.print(f"[bold]overall score:[/bold] {result.score.overall_score:.0f}")
    elif result.HasField("transcript"):
        console.print(result.transcript.text)
    if result.HasField("summary"):
        console.print(f"[bold]summary:[/bold] {result.summary.summary}")
    if result.reply_text:
        console.print(f"[bold]reply:[/bold] {result.reply_text}")
    for text in result.generated_texts:
        cut = " [dim](cut at the token cap: complete sentences kept)[/dim]" if text.truncated else ""
        console.print(f"[bold]{text.stage}:[/bold] {text.text}{cut}")
    for image in result.images:
        console.print(
            f"[bold]{image.stage}:[/bold] {image.output_name} ({image.width_px}x{image.height_px}, "
            f"{image.engine} {image.model}) for: {image.revised_prompt or image.prompt}"
        )
    for output in job.outputs:
        console.print(f"[dim]{output.name}:[/dim] {output.uri}")
    if job.state in (gateway_pb2.JOB_STATE_FAILED, gateway_pb2.JOB_STATE_PARTIAL) and job.error:
        err.print(f"[red]{_name(gateway_pb2.JobState, job.state, 'JOB_STATE_')}:[/red] {job.error}")


async def follow(client: Any, job_id: str, *, quiet: bool = False) -> Any:
    """Shows live progress per stage until the job ends; returns the final job."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from soriflow.v1 import gateway_pb2

    final = None
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        disable=quiet,
    ) as progress:
        tasks: dict[str, Any] = {}
        header = progress.add_task(f"job {job_id}", total=None)
        async for response in client.watch(job_id):
            if response.HasField("job"):
                final = response.job
                break
            event = response.event
            if event.type == gateway_pb2.JOB_EVENT_TYPE_JOB_STATE:
                state = _name(gateway_pb2.JobState, event.job_state, "JOB_STATE_")
                progress.update(
                    header,
                    description=f"job {job_id} [{STATE_STYLE.get(state, 'white')}]{state}[/] {event.message}",
                )
            elif event.stage:
                state = _name(gateway_pb2.StageState, event.stage_state, "STAGE_STATE_")
                if event.type == gateway_pb2.JOB_EVENT_TYPE_OUTPUT:
                    state, detail = StageState.SUCCEEDED, f"stored {event.output.name}"
                else:
                    detail = event.message
                if event.stage not in tasks:
                    tasks[event.stage] = progress.add_task(event.stage, total=1)
                done = 1 if state in (StageState.SUCCEEDED, StageState.FAILED, StageState.SKIPPED) else 0
                attempt = f" (attempt {event.attempt})" if event.attempt > 1 else ""
                progress.update(
                    tasks[event.stage],
                    completed=done,
                    description=f"  {event.stage}: [{STATE_STYLE.get(state, 'white')}]{state}[/]"
                    f"{attempt} {detail}",
                )
        progress.update(header, total=1, completed=1)
    return final if final is not None else await client.get(job_id)


def register(app: typer.Typer, groups: Any) -> None:
    from .dbcli import register as register_db
    from .images.cli import register as register_images

    register_images(app, groups)
    register_db(app, groups)

    @app.command()
    def submit(
        source: Annotated[
            str,
            typer.Argument(
                help="A local audio file, or s3://bucket/key already uploaded; none for a pipeline that "
                "reads no audio (nightly-story)"
            ),
        ] = "",
        pipeline: Annotated[str, typer.Option(help="Pipeline; default: routed by the key prefix")] = "",
        param: Annotated[
            list[str] | None, typer.Option("--param", "-p", help="Pipeline parameter key=value")
        ] = None,
        meta: Annotated[list[str] | None, typer.Option("--meta", "-m", help="Job metadata key=value")] = None,
        watch: Annotated[bool, typer.Option("--watch", "-w", help="Follow the job until it ends")] = False,
        idempotency_key: Annotated[str, typer.Option(help="Deduplicates retried submissions")] = "",
        server: ServerOption = None,
    ) -> None:
        """Submit a job for a file or S3 object (or, for a pipeline that reads no audio, for its
        parameters); with --watch, follow it and print the result."""
        from soriflow.client import GatewayClient
        from soriflow.v1 import gateway_pb2

        if not source and not pipeline:
            raise typer.BadParameter("give an audio file, or --pipeline for one that reads no audio")
        if source and not source.startswith("s3://") and not Path(source).is_file():
            raise typer.BadParameter(f"{source} is not a file (or an s3:// URI)")

        async def run() -> int:
            async with GatewayClient(server) as client:
                kwargs: dict[str, Any] = dict(
                    pipeline=pipeline,
                    parameters=_pairs(param, "--param"),
                    metadata=_pairs(meta, "--meta"),
                    idempotency_key=idempotency_key,
                )
                if not source:
                    job = await client.submit_parameters(**kwargs)
                elif source.startswith("s3://"):
                    job = await client.submit_uri(source, **kwargs)
                else:
                    job = await client.submit_file(source, **kwargs)
                err.print(f"job {job.job_id} ({job.pipeline}) submitted for {job.source_uri}")
                console.print(job.job_id)
                if not watch:
                    return 0
                final = await follow(client, job.job_id)
                render_result(final)
                return (
                    0
                    if final.state in (gateway_pb2.JOB_STATE_SUCCEEDED, gateway_pb2.JOB_STATE_PARTIAL)
                    else 1
                )

        raise typer.Exit(_run(run))

    @app.command("watch")
    def watch_job(
        job_id: Annotated[str, typer.Argument(help="Job id")],
        server: ServerOption = None,
        json_output: Annotated[bool, typer.Option("--json", help="Print the final job as JSON")] = False,
    ) -> None:
        """Follow a job's stages live; print its result at the end; exit 1 if it failed."""
        from google.protobuf import json_format

        from soriflow.client import GatewayClient
        from soriflow.v1 import gateway_pb2

        async def run() -> int:
            async with GatewayClient(server) as client:
                final = await follow(client, job_id, quiet=json_output)
                if json_output:
                    print(
                        json.dumps(
                            json_format.MessageToDict(final, preserving_proto_field_name=True),
                            ensure_ascii=False,
                            indent=2,
                        )
                    )
                else:
                    render_result(final)
                return (
                    0
                    if final.state in (gateway_pb2.JOB_STATE_SUCCEEDED, gateway_pb2.JOB_STATE_PARTIAL)
                    else 1
                )

        raise typer.Exit(_run(run))

    @app.command()
    def jobs(
        state: Annotated[str, typer.Option(help="Only jobs in this state (e.g. failed)")] = "",
        pipeline: Annotated[str, typer.Option(help="Only jobs of this pipeline")] = "",
        limit: Annotated[int, typer.Option(help="How many, newest first")] = 20,
        needs_review: Annotated[
            bool | None,
            typer.Option(
                "--needs-review/--no-needs-review",
                help="Only jobs a person should check (a pipeline gate failed), or only the others",
            ),
        ] = None,
        server: ServerOption = None,
    ) -> None:
        """List recent jobs."""
        from soriflow.client import GatewayClient
        from soriflow.v1 import gateway_pb2

        async def run() -> int:
            state_value = getattr(gateway_pb2, f"JOB_STATE_{state.upper()}", None) if state else 0
            if state_value is None:
                raise typer.BadParameter(f"unknown state {state!r}")
            async with GatewayClient(server) as client:
                filters = {} if needs_review is None else {"needs_review": needs_review}
                page = await client.list(page_size=limit, state=state_value, pipeline=pipeline, **filters)
            table = Table()
            for column in ("job", "pipeline", "state", "review", "created", "source", "error"):
                table.add_column(column)
            for job in page.jobs:
                name = _name(gateway_pb2.JobState, job.state, "JOB_STATE_")
                table.add_row(
                    job.job_id,
                    job.pipeline,
                    f"[{STATE_STYLE.get(name, 'white')}]{name}[/]",
                    "[yellow]needs review[/]" if job.needs_review else "",
                    job.create_time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"),
                    job.source_uri,
                    job.error[:60],
                )
            console.print(table)
            return 0

        raise typer.Exit(_run(run))

    @app.command()
    def cancel(job_id: Annotated[str, typer.Argument(help="Job id")], server: ServerOption = None) -> None:
        """Cancel a queued or running job."""
        from soriflow.client import GatewayClient
        from soriflow.v1 import gateway_pb2

        async def run() -> int:
            async with GatewayClient(server) as client:
                job = await client.cancel(job_id)
            console.print(f"{job.job_id}: {_name(gateway_pb2.JobState, job.state, 'JOB_STATE_')}")
            return 0

        raise typer.Exit(_run(run))

    @app.command()
    def schedules(server: ServerOption = None) -> None:
        """List the pipelines' cron schedules with their next run (each tick starts one job)."""
        from soriflow.client import GatewayClient

        async def run() -> int:
            async with GatewayClient(server) as client:
                items = await client.pipelines()
            if not any(p.schedules for p in items):
                console.print("no pipeline of this gateway has a schedule")
                return 0
            console.print(schedules_table(items))
            return 0

        raise typer.Exit(_run(run))

    @app.command()
    def pipelines(server: ServerOption = None) -> None:
        """List the pipelines the gateway runs."""
        from soriflow.client import GatewayClient

        async def run() -> int:
            async with GatewayClient(server) as client:
                items = await client.pipelines()
            for p in items:
                stages = ", ".join(s.name + ("?" if s.optional else "") for s in p.stages)
                console.print(f"[bold]{p.name}[/bold] ({', '.join(p.key_prefixes) or 'no prefix'}): {stages}")
                console.print(f"  {p.description}")
            return 0

        raise typer.Exit(_run(run))


def schedules_table(pipelines: Any, now: Any = None) -> Table:
    """The schedules of `pipelines` (ListPipelines' answer) with their next run, as a table."""
    import datetime as dt
    import zoneinfo

    from soriflow.v1 import gateway_pb2

    now = now or dt.datetime.now(dt.UTC)
    table = Table()
    columns = ("schedule", "pipeline", "cron", "time zone", "next run", "last tick", "catch-up", "last job")
    for column in columns:
        table.add_column(column)
    for p in pipelines:
        for schedule in p.schedules:
            zone = zoneinfo.ZoneInfo(schedule.time_zone or "UTC")
            if schedule.HasField("next_run_time"):
                when = schedule.next_run_time.ToDatetime(tzinfo=dt.UTC)
                wait = int((when - now).total_seconds())
                hours, rest = divmod(max(0, wait), 3600)
                next_run = f"{when.astimezone(zone):%Y-%m-%d %H:%M:%S %Z} (in {hours}h{rest // 60:02d}m)"
            else:
                next_run = "[dim]disabled[/dim]"
            last = (
                f"{schedule.last_tick_time.ToDatetime(tzinfo=dt.UTC).astimezone(zone):%Y-%m-%d %H:%M:%S}"
                if schedule.HasField("last_tick_time")
                else "-"
            )
            catch_up = _name(gateway_pb2.ScheduleCatchUp, schedule.catch_up, "SCHEDULE_CATCH_UP_").lower()
            if schedule.catch_up != gateway_pb2.SCHEDULE_CATCH_UP_SKIP:
                catch_up += f" ({schedule.catch_up_window_s // 3600}h)"
            table.add_row(
                schedule.name,
                p.name,
                schedule.cron,
                schedule.time_zone,
                next_run,
                last,
                catch_up,
                schedule.last_job_id or "-",
            )
    return table


def _run(coro_fn: Any) -> int:
    import grpc

    try:
        return int(asyncio.run(coro_fn()))
    except grpc.aio.AioRpcError as exc:
        err.print(f"[red]error:[/red] {exc.code().name}: {exc.details()}")
        return 1
