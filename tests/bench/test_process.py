"""A service process run for a benchmark: its command, its log, its CPU time."""
from __future__ import annotations

import os
import sys

from core.bench.process import log_tail, null_command, process_cpu_s, server_command


def test_the_service_and_null_commands():
    assert server_command(None, 8123) == [sys.executable, "-m", "core", "serve", "--port", "8123",
                                          "--host", "127.0.0.1"]
    assert server_command("synthetic:60", 8123)[-2:] == ["--catalog", "synthetic:60"]
    assert null_command("ignored", 9) == [sys.executable, "-m", "core.bench.process", "null", "9"]


def test_log_tail_is_the_last_bytes_or_says_the_log_is_unreadable(tmp_path):
    log = tmp_path / "serve.log"
    log.write_bytes(b"first line\nlast line\n\xff")
    assert log_tail(log, 11) == "last line\n\ufffd"
    assert log_tail(tmp_path / "missing.log") == "(log unreadable)"


def test_process_cpu_s_counts_this_process_and_none_for_no_process():
    before = process_cpu_s(os.getpid())
    sum(i * i for i in range(2_000_000))  # some CPU time
    assert before is not None and process_cpu_s(os.getpid()) > before
    assert process_cpu_s(2 ** 31 - 1) is None  # beyond any pid
