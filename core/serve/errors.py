"""Error messages that quote a client's input, bounded: at most so many characters and items, always encodable."""
from __future__ import annotations

import numpy as np

ECHO_CHARS = 80  # at most this much of a client's input is echoed in an error message
ECHO_ITEMS = 10  # and at most this many of its ids (or validation errors)


def echo(text: str, n: int = ECHO_CHARS) -> str:
    """A client's text as an error message may quote it: at most ``n`` characters, always encodable."""
    text = str(text)
    short = text[:n].encode("utf-8", "backslashreplace").decode("utf-8")
    return short if len(text) <= n else f"{short}... ({len(text):,} characters)"


def listed(items, n: int = ECHO_ITEMS) -> str:
    """The first ``n`` of ``items``, each quoted and :func:`echo`-bounded, and how many more there are."""
    shown = ", ".join(f"'{echo(i)}'" for i in items[:n])
    return shown + (f" and {len(items) - n:,} more" if len(items) > n else "")


def validation_errors(errors: list[dict]) -> list[dict]:
    """FastAPI's validation errors with what they echo bounded: the first ECHO_ITEMS errors, each input
    as a short, encodable stand-in (a list or object by its size), messages trimmed."""
    out = []
    for e in errors[:ECHO_ITEMS]:
        value = e.get("input")
        if isinstance(value, (list, tuple, dict)):
            value = f"({'an object' if isinstance(value, dict) else 'a list'} of {len(value):,} items)"
        elif isinstance(value, float) and not np.isfinite(value):
            value = str(value)  # NaN is not JSON
        elif not isinstance(value, (int, float, bool, type(None))):
            value = echo(value)
        out.append({"type": e.get("type"), "loc": [echo(p) if isinstance(p, str) else p for p in e.get("loc", ())],
                    "msg": echo(e.get("msg", ""), 300), "input": value})
    if len(errors) > ECHO_ITEMS:
        out.append({"type": "more", "loc": [], "msg": f"and {len(errors) - ECHO_ITEMS:,} more errors", "input": None})
    return out
