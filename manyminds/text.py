"""Text helpers shared by prompts, judges and error messages."""

from __future__ import annotations

CUT_MARK = " [...]"


def clip(text: str, limit: int, mark: str = CUT_MARK) -> str:
    """`text` cut to `limit` characters, marked where it was cut, so a prompt that quotes a
    long response (a judge, a synthesis, a selection) says the response went on."""
    return text if len(text) <= limit else text[:limit] + mark
