"""The product store: durable appends, repairs of a damaged log, and the import of the old cache store."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.serve.store import ProductStore
from tests.serve.test_service import png

pytestmark = pytest.mark.faults  # replays of faults, as in test_faults.py

PROJECT = Path(__file__).resolve().parents[2]


def test_kill_9_in_the_middle_of_additions_loses_no_confirmed_product(tmp_path):
    """A process appending products is killed at an arbitrary moment, twice; every addition that returned
    (the 201 a client would have had) is still there, and the store goes on taking new ones."""
    writer = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(PROJECT)!r})
        from core.serve.store import ProductStore
        store = ProductStore({str(tmp_path)!r}, "shop")
        start = int(sys.argv[1])
        for i in range(start, start + 100000):
            store.append({{"id": f"p{{i}}", "title": "x" * 3000, "description": "", "attributes": {{}}}},
                         bytes([i % 256]) * 5000, ".jpg")
            print(f"p{{i}}", flush=True)
    """)
    confirmed = []
    for run, start in enumerate((0, 100000)):
        proc = subprocess.Popen([sys.executable, "-c", writer, str(start)], stdout=subprocess.PIPE, text=True)
        for _ in range(30 + 17 * run):  # let it confirm a few, then kill it mid-flight
            confirmed.append(proc.stdout.readline().strip())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        confirmed += [line.strip() for line in proc.stdout if line.strip()]
    store = ProductStore(tmp_path, "shop")
    stored = [r["id"] for r in store.records()]
    assert set(confirmed) <= set(stored)
    assert len(stored) <= len(confirmed) + 2  # at most the record in flight at each kill
    for r in store.records():
        assert store.photo(r) is not None  # every stored record's photo is whole
    store.append({"id": "after", "title": "t", "description": "", "attributes": {}}, None)
    assert ProductStore(tmp_path, "shop").records()[-1]["id"] == "after"


def record(pid: str) -> dict:
    return {"id": pid, "title": f"Top {pid}", "description": "", "attributes": {}}


def test_a_short_write_takes_its_partial_line_back_and_fails_the_addition(tmp_path, monkeypatch):
    store = ProductStore(tmp_path, "shop")
    store.append(record("a"), None)
    real_write = os.write

    def disk_full(fd, data):  # writes part, then the disk is full
        if len(data) > 10:
            return real_write(fd, bytes(data[:10]))
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(OSError):
        store.append(record("b"), None)
    monkeypatch.setattr(os, "write", real_write)
    store.append(record("c"), None)
    assert [r["id"] for r in ProductStore(tmp_path, "shop").records()] == ["a", "c"] and not store.damage


def test_two_repairs_in_one_second_keep_both_damaged_copies(tmp_path):
    store = ProductStore(tmp_path, "shop")
    copies = []
    for pid in ("a", "b"):
        store.append(record(pid), None)
        damaged = store.log_path.read_bytes()[:-5]
        store.log_path.write_bytes(damaged)
        copies.append(damaged)
        store.records()
    aside = sorted(store.log_path.parent.glob(f"{store.log_path.name}.damaged-*"))
    assert sorted(p.read_bytes() for p in aside) == sorted(copies)


def test_products_of_the_old_cache_store_are_imported_once_and_a_damaged_one_waits(tmp_path):
    import numpy as np
    legacy = tmp_path / "cache"
    (legacy / "added-products").mkdir(parents=True)
    (legacy / "uploads").mkdir()
    photo = png(16)
    from core.cache import digest
    (legacy / "uploads" / f"{digest(photo)}.png").write_bytes(photo)
    old = legacy / "added-products" / "shop.npz"

    def write_old(ids):
        np.savez(old, id=np.array(ids), title=np.array(["T"] * len(ids)), description=np.array([""] * len(ids)),
                 attributes=np.array(["{}"] * len(ids)), photo=np.array([f"{digest(photo)}.png"] + [""] * (len(ids) - 1)))
    old.write_bytes(b"PK\x03\x04 damaged")
    store = ProductStore(tmp_path / "store", "shop", legacy_root=legacy)
    assert store.records() == [] and len(store.damage) == 1
    store.records()
    assert len(store.damage) == 1  # reported once, not once per read
    store.append(record("new"), None)  # the store is used meanwhile
    write_old(["old-1", "old-2"])  # somebody repairs the old file
    assert [r["id"] for r in store.records()] == ["new", "old-1", "old-2"]
    assert store.photo(store.records()[1]) == photo
    write_old(["old-1", "old-2", "old-3"])
    assert [r["id"] for r in ProductStore(tmp_path / "store", "shop", legacy_root=legacy).records()] == \
        ["new", "old-1", "old-2"]  # imported once
    from core.cache import ArtefactCache
    ArtefactCache(legacy).clear()
    assert old.exists() and (legacy / "uploads").exists()  # clearing the cache leaves user data alone
