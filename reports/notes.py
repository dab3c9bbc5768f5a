"""Method notes: what each method in a report is, and which of its parts follow the paper and which are
reconstructed. The text is the docstring of the method's package (``methods/<name>/__init__.py``,
``baselines/<name>/__init__.py``), which marks every point [paper] or [reconstructed], so the report and the code
can never disagree. Methods that are not registered in this installation get a one-line note saying so."""

from __future__ import annotations

import inspect
import sys
from typing import Iterable


def method_note(name: str) -> str:
    """The documentation of a registered method: its package's docstring, else its class's."""
    from bench.registry import METHODS

    if name not in METHODS.names():
        return f"{name}: not registered in this installation (no notes available)."
    cls = METHODS.get(name)
    package = sys.modules.get(cls.__module__.rsplit(".", 1)[0])
    text = (package.__doc__ if package is not None and package.__doc__ else None) or inspect.getdoc(cls) or ""
    return inspect.cleandoc(text) or f"{name}: no documentation."


def method_notes(methods: Iterable[str]) -> dict[str, str]:
    return {m: method_note(m) for m in sorted(set(methods))}


def to_markdown(notes: dict[str, str], title: str) -> str:
    out = [f"# {title}", ""]
    for name, text in notes.items():
        out += [f"## {name}", "", "```text", text, "```", ""]
    return "\n".join(out)
