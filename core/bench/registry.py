"""The benchmark registry, above the benchmarks it lists: ``python -m core bench <name>`` by name."""
from __future__ import annotations

import argparse
import importlib

from core.bench.command import BenchContext

# name -> "module:function" of its command, in the order `python -m core bench --help` lists them. Imported
# only when run: several benchmarks import the embedding stack, which takes seconds.
BENCHMARKS = {
    "embed": "core.bench.embed:command",
    "build": "core.bench.build:command",
    "search": "core.bench.search:command",
    "app": "core.bench.app:command",
    "warm": "core.bench.warm:command",
    "backbone": "core.bench.backbone:command",
    "cluster": "core.bench.cluster:command",
    "scale": "core.bench.scale:command",
    "map": "core.bench.mapview:command",
    "recs": "core.bench.recs:command",
    "texture": "core.bench.texture:command",
    "serve": "core.bench.loadtest:command",
    "demo": "core.bench.demo:command",
    "drill": "core.bench.drill:command",
    "bombs": "core.bench.bombs:command",
    "connections": "core.bench.connections:command",
    "ray": "core.bench.raycluster:command",
    "photos": "core.bench.photos:command",
}


def list_benchmarks() -> list[str]:
    return list(BENCHMARKS)


def run_benchmark(name: str, args: argparse.Namespace, ctx: BenchContext) -> dict:
    """The named benchmark's JSON object (a benchmark that cannot run exits with one line)."""
    module, function = BENCHMARKS[name].split(":")
    return getattr(importlib.import_module(module), function)(args, ctx)
