"""Runs mypy over the whole `soriflow` package as it is imported.

The services live in their own folders (services/stt, gateway, ...) but import
as soriflow.stt, soriflow.gateway; mypy cannot follow setuptools' editable
import hook, so this mirrors the import layout with symlinks under
build/typecheck and maps mypy's paths back to the repository's.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHADOW = ROOT / "build" / "typecheck"
MAPPING = {
    "soriflow/stt": "services/stt",
    "soriflow/scoring": "services/scoring",
    "soriflow/summarizer": "services/summarizer",
    "soriflow/tts": "services/tts",
    "soriflow/gateway": "gateway",
}


def build_shadow() -> None:
    if SHADOW.exists():
        shutil.rmtree(SHADOW)
    package = SHADOW / "soriflow"
    package.mkdir(parents=True)
    for entry in (ROOT / "soriflow").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for alias, real in MAPPING.items():
        target = ROOT / real
        if target.is_dir():
            (SHADOW / alias).symlink_to(target)


def main() -> int:
    build_shadow()
    cmd = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "soriflow",
        *sys.argv[1:],
    ]
    result = subprocess.run(cmd, cwd=SHADOW, capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    for alias, real in sorted(MAPPING.items(), key=lambda kv: -len(kv[0])):
        output = output.replace(f"{alias}/", f"{real}/")
    sys.stdout.write(output)
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
