"""`soriflow up` and `soriflow demo`: the whole system on this machine, no cloud, no GPU."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

console = Console(soft_wrap=True)


def _stack(
    database: str | None, aws_port: int, workdir: Path, extra_env: dict[str, str] | None = None
) -> Any:
    from soriflow.stack import LocalStack, StackConfig

    return LocalStack(
        StackConfig(workdir=workdir, database_url=database, aws_port=aws_port, extra_env=extra_env or {})
    )


async def _start(stack: Any) -> None:
    started = time.monotonic()
    console.print(
        "starting moto (S3/SQS/SNS) and stt, tts, summarizer, scoring, images (stand-in), gateway, live ..."
    )
    await stack.start(
        on_ready=lambda name: console.print(f"  {name} healthy after {time.monotonic() - started:.0f}s")
    )


#: Exit status after Ctrl-C or SIGTERM, as a shell reports a process ended by SIGINT.
INTERRUPTED = 130


async def _until_signal(work: Callable[[], Awaitable[int]]) -> int:
    """Runs `work` until it returns or SIGINT/SIGTERM arrives, whichever is first.

    Model loading can take minutes; Ctrl-C must stop it at once rather than
    after the stack is healthy. On a signal the work is cancelled (the caller
    then stops every process) and INTERRUPTED is returned.
    """
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, signalled.set)
    task = asyncio.ensure_future(work())
    waiter = asyncio.ensure_future(signalled.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        waiter.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    console.print("interrupted")
    return INTERRUPTED


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
            await _start(stack)
            console.print("[green]soriflow stack ready[/green]")
            for line in stack.describe():
                console.print(line)
            while True:
                dead = stack.dead()
                if dead:
                    for process in dead:
                        console.print(
                            f"[red]{process.name} exited unexpectedly with code "
                            f"{process.popen.returncode}[/red]; the end of {process.log_path}:"
                        )
                        console.print(process.tail(), markup=False)
                    return 1
                await asyncio.sleep(1.0)

        try:
            code = asyncio.run(_until_signal(run))
        except StackError as exc:
            console.print(f"[red]error:[/red] {exc}", markup=True)
            code = 1
        finally:
            console.print("stopping ...")
            stack.stop()
        console.print("stopped")
        if code == INTERRUPTED:
            code = 0  # Ctrl-C is how `up` is meant to end
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
        language: Annotated[
            str,
            typer.Option(
                help="en: a call (and the same call mumbled), a learner reading and a voice note; ko: the "
                "Korean call center's two calls under connect/ko/ on the multilingual base STT model"
            ),
        ] = "en",
    ) -> None:
        """Start the stack, upload calls, a learner reading and a voice note, and follow the jobs."""
        from soriflow.demo import Demo, report_all, run_jobs
        from soriflow.stack import StackError

        if language not in ("en", "ko"):
            console.print(f"[red]error:[/red] --language is en or ko, not {language!r}")
            raise typer.Exit(2)
        # Korean needs the multilingual model (bundled); English keeps tiny.en, the fast default.
        extra = {"SORIFLOW_STT_MODEL": "base"} if language == "ko" else {}
        stack = _stack(database, aws_port, workdir, extra)
        output_dir.mkdir(parents=True, exist_ok=True)

        async def run() -> int:
            await _start(stack)
            console.print("[green]soriflow stack ready[/green]")
            runner = Demo(stack, output_dir, console, language)
            jobs = await run_jobs(runner, timeout_s=timeout)
            return report_all(runner, jobs)

        started = time.monotonic()
        try:
            code = asyncio.run(_until_signal(run))
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
