"""Renders docs/api.md from the protos' own comments (the contract documents itself).

protoc compiles protos/ with source info into a descriptor set; services,
methods, messages, fields and enums are listed with their leading comments.
`--check FILE` fails when FILE differs from what would be generated.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"

SCALARS = {
    descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE: "double",
    descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT: "float",
    descriptor_pb2.FieldDescriptorProto.TYPE_INT64: "int64",
    descriptor_pb2.FieldDescriptorProto.TYPE_UINT64: "uint64",
    descriptor_pb2.FieldDescriptorProto.TYPE_INT32: "int32",
    descriptor_pb2.FieldDescriptorProto.TYPE_BOOL: "bool",
    descriptor_pb2.FieldDescriptorProto.TYPE_STRING: "string",
    descriptor_pb2.FieldDescriptorProto.TYPE_BYTES: "bytes",
    descriptor_pb2.FieldDescriptorProto.TYPE_UINT32: "uint32",
}


def descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "soriflow" / "v1").glob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "api.pb"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{PROTO_ROOT}",
                "--include_source_info",
                f"--descriptor_set_out={out}",
                *protos,
            ],
            check=True,
            cwd=PROTO_ROOT,
        )
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


class Comments:
    def __init__(self, file: descriptor_pb2.FileDescriptorProto) -> None:
        self.by_path = {
            tuple(loc.path): loc.leading_comments.strip() for loc in file.source_code_info.location
        }

    def get(self, *path: int) -> str:
        return " ".join(line.strip() for line in self.by_path.get(path, "").splitlines()).strip()


def short(type_name: str) -> str:
    name = type_name.lstrip(".")
    return name.removeprefix("soriflow.v1.")


def type_of(field: descriptor_pb2.FieldDescriptorProto) -> str:
    return SCALARS.get(field.type) or short(field.type_name)


def field_type(field: descriptor_pb2.FieldDescriptorProto, maps: dict[str, str]) -> str:
    if field.type_name and short(field.type_name) in maps:
        return maps[short(field.type_name)]
    base = SCALARS.get(field.type) or short(field.type_name)
    if field.label == descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED:
        return f"repeated {base}"
    if field.proto3_optional:
        return f"optional {base}"
    return base


def render_message(
    msg: descriptor_pb2.DescriptorProto,
    comments: Comments,
    path: tuple[int, ...],
    out: list[str],
    prefix: str = "",
) -> None:
    name = prefix + msg.name
    maps = {
        f"{name}.{nested.name}": f"map<{type_of(nested.field[0])}, {type_of(nested.field[1])}>"
        for nested in msg.nested_type
        if nested.options.map_entry
    }
    out += [f"### {name}", "", comments.get(*path) or "", ""]
    if msg.field:
        out += ["| field | type | description |", "|---|---|---|"]
        for i, field in enumerate(msg.field):
            oneof = ""
            if field.HasField("oneof_index") and not field.proto3_optional:
                oneof = f" (oneof `{msg.oneof_decl[field.oneof_index].name}`)"
            text = comments.get(*path, 2, i).replace("|", "\\|")
            out.append(f"| `{field.name}` = {field.number} | `{field_type(field, maps)}` | {text}{oneof} |")
        out.append("")
    for j, nested in enumerate(msg.nested_type):
        if not nested.options.map_entry:
            render_message(nested, comments, (*path, 3, j), out, prefix=f"{name}.")


def render() -> str:
    out = [
        "# API reference",
        "",
        "Generated from `protos/soriflow/v1` by `make proto` (scripts/apidoc.py); the comments in the",
        "protos are the source. Conventions: times in milliseconds (`_ms`), rates in hertz (`_hz`),",
        "scores 0-100, confidences and probabilities 0-1, every enum's zero value `*_UNSPECIFIED`.",
        "",
    ]
    files = [f for f in descriptor_set().file if f.package == "soriflow.v1"]
    for file in files:
        comments = Comments(file)
        out += [f"## {file.name}", ""]
        for s, service in enumerate(file.service):
            out += [
                f"### service {service.name}",
                "",
                comments.get(6, s),
                "",
                "| method | request | response | description |",
                "|---|---|---|---|",
            ]
            for m, method in enumerate(service.method):
                req = ("stream " if method.client_streaming else "") + short(method.input_type)
                res = ("stream " if method.server_streaming else "") + short(method.output_type)
                text = comments.get(6, s, 2, m).replace("|", "\\|")
                out.append(f"| `{method.name}` | `{req}` | `{res}` | {text} |")
            out.append("")
        for e, enum in enumerate(file.enum_type):
            out += [
                f"### enum {enum.name}",
                "",
                comments.get(5, e),
                "",
                "| value | number | meaning |",
                "|---|---|---|",
            ]
            for v, value in enumerate(enum.value):
                out.append(f"| `{value.name}` | {value.number} | {comments.get(5, e, 2, v)} |")
            out.append("")
        for i, msg in enumerate(file.message_type):
            render_message(msg, comments, (4, i), out)
    text = "\n".join(out)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", type=Path, help="compare with this file instead of printing")
    args = parser.parse_args()
    text = render()
    if args.check is None:
        sys.stdout.write(text)
        return 0
    if not args.check.exists() or args.check.read_text() != text:
        print(f"{args.check} is stale: run `make proto`")
        return 1
    print(f"{args.check} is current")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
