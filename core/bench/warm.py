"""The warm-up benchmark: tools/bench_warm.py, run in a child process (it drives the app with AppTest, and core
never imports streamlit), on an empty artefact cache of its own unless ``--cache-dir`` names one."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

from core.bench.command import BenchContext
from core.config import PROJECT_ROOT


def command(args: argparse.Namespace, ctx: BenchContext) -> dict:
    """Exits with the child's status: it prints its own JSON."""
    with tempfile.TemporaryDirectory(prefix="atelier-warm-") as scratch:
        cache = args.cache_dir or os.path.join(scratch, "cache")
        env = dict(os.environ, ATELIER_CATALOG=ctx.spec, ATELIER_BACKBONE=args.backbone, ATELIER_CACHE=cache,
                   ATELIER_STORE=os.path.join(scratch, "store"), ATELIER_WARM="1")
        status = subprocess.call([sys.executable, str(PROJECT_ROOT / "tools" / "bench_warm.py")], env=env)
    sys.exit(status)
