"""SSML: validation and the few facts about elements the rest of the service needs.

SSML is checked here once, so every engine sees the same verdict: well-formed
XML with a `<speak>` root, only the elements Soriflow can honour (the W3C core
that Google Cloud TTS and espeak-ng share), and well-formed `<break>`
attributes. Anything else is INVALID_ARGUMENT with the parser's line and column,
instead of an engine failing half-way through a long text. A DOCTYPE is
refused (no entity expansion from user input). Namespaces are dropped so
fragments re-serialise as plain `<prosody>` rather than `<ns0:prosody>`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Final

from soriflow.errors import InvalidArgument

#: Elements that may hold text and other elements, split at sentence ends like plain text.
CONTAINERS: Final = frozenset({"speak", "p", "s", "prosody", "emphasis", "voice", "lang"})
#: Elements kept whole: their content is not text to re-split.
ATOMIC: Final = frozenset({"break", "say-as", "sub", "phoneme", "mark"})
SUPPORTED: Final = CONTAINERS | ATOMIC
#: Containers that are sentences (or paragraphs) of their own.
SENTENCE_ELEMENTS: Final = frozenset({"p", "s"})

#: Pause of `<break strength=...>`, in milliseconds (the W3C names; Google's values).
BREAK_STRENGTH_MS: Final = {
    "none": 0,
    "x-weak": 100,
    "weak": 200,
    "medium": 400,
    "strong": 700,
    "x-strong": 1000,
}
MAX_BREAK_MS: Final = 10_000
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_TIME = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s)\s*$", re.IGNORECASE)


def looks_like_ssml(text: str) -> bool:
    """Whether plain input is really SSML (the CLI accepts both)."""
    return text.lstrip().startswith("<speak")


def break_ms(element: ET.Element) -> int:
    """The pause a `<break>` asks for; `time` wins over `strength`; neither means medium."""
    time = element.get("time")
    if time is not None:
        match = _TIME.match(time)
        if match is None:
            raise InvalidArgument(
                f'invalid SSML: <break time="{time}">: use a time such as "500ms" or "1.5s"'
            )
        value = float(match.group(1)) * (1000 if match.group(2).lower() == "s" else 1)
        if value > MAX_BREAK_MS:
            raise InvalidArgument(
                f'invalid SSML: <break time="{time}"> is over the {MAX_BREAK_MS // 1000} s maximum'
            )
        return round(value)
    strength = element.get("strength", "medium")
    if strength not in BREAK_STRENGTH_MS:
        raise InvalidArgument(
            f'invalid SSML: <break strength="{strength}">: use one of {", ".join(BREAK_STRENGTH_MS)}'
        )
    return BREAK_STRENGTH_MS[strength]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if tag.startswith("{") else tag


def _strip_namespaces(element: ET.Element) -> None:
    for el in element.iter():
        if not isinstance(el.tag, str):  # comments and processing instructions
            continue
        el.tag = _local(el.tag)
        for key in [k for k in el.attrib if k.startswith("{")]:
            value = el.attrib.pop(key)
            el.attrib["xml:lang" if key == _XML_LANG else _local(key)] = value


def _check(element: ET.Element) -> None:
    for el in element.iter():
        if not isinstance(el.tag, str):
            continue
        if el.tag not in SUPPORTED:
            raise InvalidArgument(
                f"invalid SSML: <{el.tag}> is not supported; use {', '.join(sorted(SUPPORTED))}"
            )
        if el.tag == "speak" and el is not element:
            raise InvalidArgument("invalid SSML: <speak> may only be the root element")
        if el.tag == "break":
            break_ms(el)
            if len(el) or (el.text or "").strip():
                raise InvalidArgument("invalid SSML: <break> must be empty")
        if el.tag == "sub" and "alias" not in el.attrib:
            raise InvalidArgument('invalid SSML: <sub> needs an alias attribute (<sub alias="...">)')
        if el.tag == "phoneme" and "ph" not in el.attrib:
            raise InvalidArgument("invalid SSML: <phoneme> needs a ph attribute")


def _drop_comments(element: ET.Element) -> None:
    """Removes comments and processing instructions, keeping their tails as text."""
    for parent in element.iter():
        for child in list(parent):
            if isinstance(child.tag, str):
                continue
            tail = child.tail or ""
            index = list(parent).index(child)
            if index == 0:
                parent.text = (parent.text or "") + tail
            else:
                prev = parent[index - 1]
                prev.tail = (prev.tail or "") + tail
            parent.remove(child)


def parse_ssml(source: str) -> ET.Element:
    """The `<speak>` element of `source`, validated; INVALID_ARGUMENT says what is wrong and where."""
    if "<!DOCTYPE" in source or "<!ENTITY" in source:
        raise InvalidArgument("invalid SSML: DOCTYPE and entity declarations are not allowed")
    try:
        root = ET.fromstring(source.strip())
    except ET.ParseError as exc:
        raise InvalidArgument(f"invalid SSML: {exc} (the input must be well-formed XML)") from None
    _drop_comments(root)
    _strip_namespaces(root)
    if root.tag != "speak":
        raise InvalidArgument(f"invalid SSML: the root element must be <speak>, not <{root.tag}>")
    _check(root)
    return root


def element_text(element: ET.Element) -> str:
    """All text inside an element (not its tail)."""
    return "".join(element.itertext())


def open_tag(tag: str, attrib: dict[str, str]) -> str:
    """`<tag a="v">` with escaped attribute values."""
    attrs = "".join(f' {k}="{escape_attr(v)}"' for k, v in attrib.items())
    return f"<{tag}{attrs}>"


def escape_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_attr(text: str) -> str:
    return escape_text(text).replace('"', "&quot;")


def serialize(element: ET.Element) -> str:
    """The element as SSML, without its tail."""
    tail, element.tail = element.tail, None
    try:
        return ET.tostring(element, encoding="unicode")
    finally:
        element.tail = tail
