"""Reading (input, summary) CSV files in UTF-8 or EUC-KR.

Korean data sets often come from Excel on Windows, saved as EUC-KR (or its
superset CP949); others are UTF-8, with or without a BOM. The encoding is
found by trying strict UTF-8 first (which almost never decodes EUC-KR bytes
by accident), then CP949, then charset-normalizer's best guess, and is
reported so a surprising guess is visible.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from soriflow.errors import InvalidArgument


@dataclass(frozen=True)
class Example:
    """One row: the text to summarize and the reference summary."""

    input: str
    summary: str


@dataclass(frozen=True)
class Dataset:
    examples: list[Example]
    encoding: str
    path: str


def decode_bytes(raw: bytes) -> tuple[str, str]:
    """(text, encoding name) of CSV bytes."""
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8"), "utf-8-sig"
    for encoding, label in (("utf-8", "utf-8"), ("cp949", "euc-kr")):
        try:
            return raw.decode(encoding), label
        except UnicodeDecodeError:
            continue
    from charset_normalizer import from_bytes

    best = from_bytes(raw).best()
    if best is None:
        raise InvalidArgument("cannot tell the CSV's text encoding: save it as UTF-8")
    return str(best), best.encoding


def read_pairs(path: Path, *, input_column: str = "input", summary_column: str = "summary") -> Dataset:
    """The examples of a CSV with `input` and `summary` columns (header names case-insensitive)."""
    if not path.is_file():
        raise InvalidArgument(f"{path} does not exist")
    text, encoding = decode_bytes(path.read_bytes())
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = {name.strip().lower(): name for name in reader.fieldnames or () if name}
    missing = [c for c in (input_column, summary_column) if c.lower() not in fields]
    if missing:
        raise InvalidArgument(
            f"{path}: no {' or '.join(repr(c) for c in missing)} column; the header has "
            f"{', '.join(repr(f) for f in reader.fieldnames or ()) or 'nothing'}"
        )
    source, target = fields[input_column.lower()], fields[summary_column.lower()]
    examples = []
    for row in reader:
        inp, ref = (row.get(source) or "").strip(), (row.get(target) or "").strip()
        if inp and ref:
            examples.append(Example(inp, ref))
    if not examples:
        raise InvalidArgument(f"{path}: no rows with both an input and a summary")
    return Dataset(examples, encoding, str(path))
