"""Every benchmark the CLI offers names a command that exists, in the order the CLI lists them."""
import importlib

from core.bench.registry import BENCHMARKS, list_benchmarks


def test_every_benchmark_names_a_command():
    assert list_benchmarks() == ["embed", "build", "search", "app", "warm", "backbone", "cluster", "scale", "map",
                                 "recs", "texture",
                                 "serve", "demo", "drill", "bombs", "connections", "ray", "photos"]
    for name, target in BENCHMARKS.items():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), name
