"""`soriflow up` and `soriflow demo`: the whole system on this machine, no cloud, no GPU."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

console = Console(soft_wrap=True)


def _stack(database: str | None, aws_port: int, workdir: Path) -> Any:
    from soriflow.stack import LocalStack, StackConfig

    return LocalStack(StackConfig(workdir=workdir, database_url=database, aws_port=aws_port))


async def _start(stack: Any) -> None:
    started = time.monotonic()
    console.print("starting moto (S3/SQS/SNS) and stt, tts, summarizer, scoring, gateway ...")
    await stack.start(
        on_ready=lambda name: console.print(f"  {name} healthy after {time.monotonic() - started:.0f}s")
    )


def register(app: typer.Typer, groups: Any) -> None:
    @app.command()
    def up(
        database: Annotated[
            str | None, typer.Option(help="Job store URL (default: SQLite in .soriflow/)")
        ] = None,
        aws_port: Annotated[int, typer.Option(help="Port of the local S3/SQS endpoint")] = 4566,
        workdir: Annotated[Path, typer.Option(help="Where logs and the SQLite job store go")] = Path(
            ".soriflow"
        ),
    ) -> None:
        """Run the full stack locally until Ctrl-C: moto S3/SQS, every service, the gateway."""
        from soriflow.stack import StackError

        stack = _stack(database, aws_port, workdir)

        async def run() -> int:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            await _start(stack)
            console.print("[green]soriflow stack ready[/green]")
            for line in stack.describe():
                console.print(line)
            while not stop.is_set():
                dead = stack.dead()
                if dead:
                    for process in dead:
                        console.print(
                            f"[red]{process.name} exited unexpectedly with code "
                            f"{process.popen.returncode}[/red]; the end of {process.log_path}:"
                        )
                        console.print(process.tail(), markup=False)
                    return 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
            console.print("stopping ...")
            return 0

        try:
            code = asyncio.run(run())
        except StackError as exc:
            console.print(f"[red]error:[/red] {exc}", markup=True)
            code = 1
        finally:
            stack.stop()
        console.print("stopped")
        raise typer.Exit(code)

    @app.command()
    def demo(
        output_dir: Annotated[Path, typer.Option(help="Where outputs are copied")] = Path("demo-output"),
        database: Annotated[
            str | None, typer.Option(help="Job store URL (default: SQLite in .soriflow/)")
        ] = None,
        aws_port: Annotated[int, typer.Option(help="Port of the local S3/SQS endpoint")] = 4566,
        workdir: Annotated[Path, typer.Option(help="Where logs and the SQLite job store go")] = Path(
            ".soriflow"
        ),
        timeout: Annotated[float, typer.Option(help="Seconds the jobs may take")] = 600.0,
    ) -> None:
        """Start the stack, upload a call, a learner reading and a voice note, and follow the three jobs."""
        from soriflow.demo import Demo, report_all, run_jobs
        from soriflow.stack import StackError

        stack = _stack(database, aws_port, workdir)
        output_dir.mkdir(parents=True, exist_ok=True)

        async def run() -> int:
            await _start(stack)
            console.print("[green]soriflow stack ready[/green]")
            runner = Demo(stack, output_dir, console)
            jobs = await run_jobs(runner, timeout_s=timeout)
            return report_all(runner, jobs)

        started = time.monotonic()
        try:
            code = asyncio.run(run())
        except StackError as exc:
            console.print(f"[red]error:[/red] {exc}")
            code = 1
        except TimeoutError:
            console.print(
                f"[red]error:[/red] the demo jobs did not finish within {timeout:.0f}s; logs in "
                f"{workdir / 'logs'}/"
            )
            code = 1
        finally:
            stack.stop()
        console.print(f"demo took {time.monotonic() - started:.0f}s")
        raise typer.Exit(code)
