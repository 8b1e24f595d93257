"""Text templates: "문의하신 내용이 {summary} 맞으신가요?" filled in by a pipeline.

The language is Soriflow's one template language (`soriflow.text.templates`):
`{name}` placeholders with a few string filters (`{name|lower}`), `{{` and `}}`
for literal braces, anything else an error. It is deliberately not `str.format`:
a template comes from configuration or a request, and `{summary.__class__}` or
`{0[1]}` must be a plain error, not attribute access.
"""

from __future__ import annotations

from soriflow.text.templates import placeholders as placeholders
from soriflow.text.templates import render as render

__all__ = ["placeholders", "render"]
