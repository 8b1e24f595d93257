"""Running ffmpeg on pipes: bytes in on stdin, bytes out on stdout, never a temporary file.

Decoding (soriflow.audio), encoding and prosody (the TTS service) all go
through `pipe`, so the missing binary, a hang and ffmpeg's own complaint are
handled one way; each caller turns them into the status code that fits its
request (a client's bad audio is INVALID_ARGUMENT, a failing encoder is
UNAVAILABLE).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

BINARY = "ffmpeg"
#: Options every call starts with: no prompts, no banner, only errors on stderr.
QUIET = ("-nostdin", "-hide_banner", "-loglevel", "error")


class FfmpegMissing(RuntimeError):
    """The ffmpeg program is not installed (or not on PATH)."""


class FfmpegFailed(RuntimeError):
    """ffmpeg exited with an error; `reason` is its complaint, trimmed for a person."""

    def __init__(self, reason: str, stdout: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.stdout = stdout


def find(binary: str | None = None) -> str | None:
    return shutil.which(binary or BINARY)


def reason(stderr: bytes, *, limit: int = 300) -> str:
    """ffmpeg's complaint without addresses and repeats, short enough for a client message."""
    lines: list[str] = []
    for raw in stderr.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if line.startswith("[") and "] " in line:
            line = line.split("] ", 1)[1]
        line = line.removeprefix("pipe:0: ").removeprefix("pipe:1: ").rstrip(".")
        if line and "Last message repeated" not in line and line not in lines:
            lines.append(line)
    text = "; ".join(lines) or "ffmpeg gave no reason"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def pipe(
    args: Sequence[str], data: bytes, *, timeout_s: float, binary: str | None = None
) -> tuple[bytes, bytes]:
    """Runs `ffmpeg QUIET args` with `data` on stdin; returns (stdout, stderr).

    Raises FfmpegMissing, TimeoutError (the process is killed and reaped) or
    FfmpegFailed with ffmpeg's reason when it exits non-zero.
    """
    found = find(binary)
    if found is None:
        raise FfmpegMissing(f"the ffmpeg program ({binary or BINARY!r}) is not installed")
    with subprocess.Popen(
        [found, *QUIET, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        try:
            out, err = proc.communicate(data, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise TimeoutError(f"ffmpeg took longer than {timeout_s:.3g}s") from None
        finally:
            if proc.poll() is None:  # an exception inside communicate (e.g. KeyboardInterrupt)
                proc.kill()
                proc.wait()
    if proc.returncode != 0:
        raise FfmpegFailed(reason(err), out)
    return out, err
