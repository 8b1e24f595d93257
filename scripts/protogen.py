"""Generate the Python bindings of protos/ into soriflow/v1 (or check they are fresh).

The generated modules are committed so that `pip install soriflow` needs no
protoc; `--check` regenerates into a temporary folder and fails when anything
differs, which keeps the committed code honest in CI.
"""

from __future__ import annotations

import argparse
import filecmp
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE_DIR = Path("soriflow") / "v1"
INIT_TEXT = '"""Generated protobuf and gRPC modules for the soriflow.v1 API (see protos/)."""\n'


def generate(out_root: Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "soriflow" / "v1").glob("*.proto"))
    bindir = Path(sys.executable).parent  # mypy-protobuf's plugins live beside the interpreter
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *protos,
    ]
    result = subprocess.run(cmd, cwd=PROTO_ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:  # protoc's own messages; the plugins' progress lines are noise otherwise
        sys.stderr.write(result.stderr)
        raise SystemExit(f"protoc failed with exit code {result.returncode}")
    (out_root / PACKAGE_DIR / "__init__.py").write_text(INIT_TEXT)


def generated_files(root: Path) -> set[str]:
    folder = root / PACKAGE_DIR
    return {p.name for p in folder.iterdir() if p.is_file() and p.suffix in {".py", ".pyi"}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed code is stale")
    args = parser.parse_args()
    if not args.check:
        target = ROOT / PACKAGE_DIR
        for stale in target.glob("*_pb2*.py*"):
            stale.unlink()
        generate(ROOT)
        print(f"generated {len(generated_files(ROOT))} files in {PACKAGE_DIR}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        want, have = generated_files(fresh), generated_files(ROOT)
        problems = [f"missing: {n}" for n in sorted(want - have)]
        problems += [f"not generated from any proto: {n}" for n in sorted(have - want)]
        for name in sorted(want & have):
            if not filecmp.cmp(fresh / PACKAGE_DIR / name, ROOT / PACKAGE_DIR / name, shallow=False):
                problems.append(f"stale: {name}")
        if problems:
            print("generated code in soriflow/v1 is out of date; run `make proto`:", *problems, sep="\n  ")
            return 1
    print("generated code is fresh")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
