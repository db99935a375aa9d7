"""Building Python AST objects one thread at a time, on the Pythons where two threads doing it at once can fail
(CPython gh-106905).

On CPython 3.11.0-3.11.7 the AST constructor (`ast.parse`, i.e. `compile(..., ast.PyCF_ONLY_AST)`) counts its
recursion depth in one counter per interpreter. A garbage collection during the construction can run a finaliser,
which is Python code and so lets another thread run; when that thread builds an AST too, the counter is reset under
the first one, which ends with ``SystemError: AST constructor recursion depth mismatch``. Fixed in 3.11.8
(python/cpython#113476); from 3.12 a collection no longer runs in the middle of C code.

Atelier builds ASTs in several threads at once: the app's script thread compiles each page through Streamlit's
"magic" (`ast.parse`), while the background build imports PyTorch Geometric and torch._dynamo (whose imports read
source with `ast.parse` and `inspect.signature`) and loads .npz artefacts (numpy reads each array's header with
`ast.literal_eval`); the retrieval service loads artefacts from its request threads and its release watcher.
Every one of those goes through the module attribute `ast.parse`, which is wrapped here: one thread at a time, and
the collector paused meanwhile, so no finaliser (no Python code) runs during a construction: it cannot be
interleaved, and the lock's holder never waits for anything while others wait for it. Not covered: a module that
bound `from ast import parse` before the guard, or that calls `compile(..., ast.PyCF_ONLY_AST)` itself (anyio
does, once, when imported). Wrapping the builtin `compile` would cover those too, but a wrapper would change which
`__future__` flags every other `compile` call inherits (from its caller's frame), so it is left alone.
"""
from __future__ import annotations

import ast
import gc
import sys
import threading
from typing import Callable


def affected(version: tuple[int, ...] = tuple(sys.version_info[:3])) -> bool:
    """Whether ``version`` of CPython has the unsafe AST constructor counter."""
    return (3, 11) <= version < (3, 11, 8)


class LockedParse:
    """``parse`` (the original `ast.parse`) called by one thread at a time, with the garbage collector paused."""

    def __init__(self, parse: Callable[..., ast.AST]):
        self.parse = parse
        self.lock = threading.RLock()  # re-entrant: a warning raised while parsing may run code that parses

    def __call__(self, *args, **kwargs) -> ast.AST:
        with self.lock:
            collecting = gc.isenabled()
            gc.disable()
            try:
                return self.parse(*args, **kwargs)
            finally:
                if collecting:
                    gc.enable()


def guard_ast_parse() -> bool:
    """Put `ast.parse` behind :class:`LockedParse` on an affected CPython, once per process; True if it is (now).
    Call it before starting threads: the app's common module, the service's app and the CLI do."""
    if isinstance(ast.parse, LockedParse):
        return True
    if not (sys.implementation.name == "cpython" and affected()):
        return False
    ast.parse = LockedParse(ast.parse)
    return True
