"""What a ``python -m core bench <name>`` command is given: the catalogue and the CLI's own helpers.

A benchmark module offers ``command(args, ctx) -> dict`` (the JSON object the CLI prints); the CLI's helpers
come in through :class:`BenchContext`, since core.bench sits below the CLI and cannot import it."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from core.embeddings.backbone import Backbone
    from core.embeddings.pipeline import BuildConfig
    from core.progress import Progress


@dataclass(frozen=True)
class BenchContext:
    spec: str  # the catalogue: --catalog, else the default one (a benchmark may choose its own default)
    backbone: Callable[[str], Backbone]  # a backbone by name, its notes printed; exits when weights are missing
    model_names: Callable[[str], list[str]]  # comma-separated recommender names, checked; exits otherwise
    build_config: Callable[[argparse.Namespace], BuildConfig]  # --index and --texture-views; exits when bad
    progress: Callable[[], Progress]  # a fresh progress callback (bars on stderr)
