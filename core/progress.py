"""Progress callbacks: how long-running work reports how far it has come."""
from __future__ import annotations

from typing import Callable

Progress = Callable[[str, int, int], None]  # (stage, done, total)
Ticks = Callable[[int, int], None]  # (done, total) of a single stage
