"""The app benchmark: tools/bench_app.py, run in a child process (AppTest needs streamlit, which core never
imports)."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

from core.bench.command import BenchContext
from core.config import PROJECT_ROOT


def command(args: argparse.Namespace, ctx: BenchContext) -> dict:
    """Exits with the child's status: it prints its own JSON."""
    env = dict(os.environ, ATELIER_CATALOG=ctx.spec, ATELIER_BACKBONE=args.backbone)
    sys.exit(subprocess.call([sys.executable, str(PROJECT_ROOT / "tools" / "bench_app.py")], env=env))
