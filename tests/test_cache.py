"""Tests of the artefact cache: hits and misses, corrupt files never served, atomic writes, process locking,
and the per-row store."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.cache import ArtefactCache, RowStore, _size, file_digest, json_arrays, json_value

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CFG = {"what": "test", "k": 3}


class Counter:
    """A compute function that counts its calls and returns ``value`` filled arrays."""

    def __init__(self, value: float = 1.0):
        self.calls = 0
        self.value = value

    def __call__(self) -> dict[str, np.ndarray]:
        self.calls += 1
        return {"a": np.full((50, 4), self.value, np.float32), "ids": np.array(["x", "y"])}


def _tmp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def _npz_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.npz"))


@pytest.fixture
def cache(tmp_path) -> ArtefactCache:
    return ArtefactCache(tmp_path / "cache")


def test_default_root_follows_the_environment(isolated_env):
    assert ArtefactCache().root == isolated_env


def test_get_or_compute_computes_once_then_hits(cache):
    compute = Counter()
    first = cache.get_or_compute("thing", CFG, "fp", compute)
    second = cache.get_or_compute("thing", CFG, "fp", compute)
    third = ArtefactCache(cache.root).get_or_compute("thing", dict(reversed(CFG.items())), "fp", compute)
    assert compute.calls == 1
    for got in (second, third):
        assert set(got) == {"a", "ids"}
        np.testing.assert_array_equal(got["a"], first["a"])
        assert got["ids"].tolist() == ["x", "y"]
    assert len(_npz_files(cache.root)) == 1


@pytest.mark.parametrize("cfg, fingerprint", [({"what": "test", "k": 4}, "fp"), (CFG, "fp2")])
def test_changed_config_or_fingerprint_recomputes(cache, cfg, fingerprint):
    compute = Counter()
    cache.get_or_compute("thing", CFG, "fp", compute)
    cache.get_or_compute("thing", cfg, fingerprint, compute)
    assert compute.calls == 2
    assert len(_npz_files(cache.root)) == 2


def _built(cache: ArtefactCache) -> Path:
    cache.get_or_compute("thing", CFG, "fp", Counter(1.0))
    (path,) = _npz_files(cache.root)
    return path


def _assert_recomputed(cache: ArtefactCache, path: Path) -> None:
    """The damaged file is not served: the compute runs and a good file replaces it."""
    again = Counter(2.0)
    got = cache.get_or_compute("thing", CFG, "fp", again)
    assert again.calls == 1
    assert np.all(got["a"] == 2.0)
    assert np.all(cache.load("thing", path.stem)["a"] == 2.0)
    assert not _tmp_files(cache.root)


def test_truncated_file_is_deleted_and_recomputed(cache):
    path = _built(cache)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert cache.load("thing", path.stem) is None
    assert not path.exists()
    _assert_recomputed(cache, path)


def test_flipped_bytes_in_the_data_are_detected_and_recomputed(cache):
    path = _built(cache)
    data = bytearray(path.read_bytes())
    at = data.find(np.full((50, 4), 1.0, np.float32).tobytes()) + 100
    assert at > 100
    data[at] ^= 0x40
    path.write_bytes(bytes(data))
    _assert_recomputed(cache, path)


def test_no_single_flipped_bit_is_ever_served_or_raises(cache):
    """Wherever one bit flips, load either detects it (None, file deleted) or returns the exact arrays
    (the bit was in a field nothing reads); it never raises and never returns wrong data."""
    path = _built(cache)
    good = path.read_bytes()
    detected = 0
    for at in range(len(good)):
        for bit in (0x01, 0x80):
            data = bytearray(good)
            data[at] ^= bit
            path.write_bytes(bytes(data))
            got = cache.load("thing", path.stem)
            if got is None:
                detected += 1
                assert not path.exists(), (at, bit)
            else:
                assert np.all(got["a"] == 1.0) and got["ids"].tolist() == ["x", "y"], (at, bit)
    assert detected > len(good)  # most flips hit checked bytes


def test_failed_write_leaves_no_temporary_file(cache, monkeypatch):
    cache.get_or_compute("thing", CFG, "fp", Counter())

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError):
        cache.get_or_compute("thing", CFG, "other", Counter())
    monkeypatch.undo()
    assert not _tmp_files(cache.root)
    assert len(_npz_files(cache.root)) == 1


def test_failed_compute_saves_nothing_and_releases_the_lock(cache):
    def boom():
        raise RuntimeError("compute failed")

    with pytest.raises(RuntimeError, match="compute failed"):
        cache.get_or_compute("thing", CFG, "fp", boom)
    assert not _npz_files(cache.root) and not _tmp_files(cache.root)
    compute = Counter()
    cache.get_or_compute("thing", CFG, "fp", compute)  # would block forever if the lock were still held
    assert compute.calls == 1


WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import numpy as np
    from core.cache import ArtefactCache

    root, me, other = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    (root.parent / f"ready-{me}").touch()
    while not (root.parent / f"ready-{other}").exists():  # start both builds at the same moment
        time.sleep(0.01)

    def compute():
        with open(root.parent / "computations.txt", "a") as f:
            f.write(me + "\\n")
        time.sleep(1.0)
        return {"a": np.arange(1000, dtype=np.float32)}

    got = ArtefactCache(root).get_or_compute("shared", {"cfg": 1}, "fp", compute)
    print(float(got["a"].sum()))
""")


def test_two_processes_building_one_artefact_compute_it_once(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    root = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    procs = [subprocess.Popen([sys.executable, str(script), str(root), me, other], cwd=PROJECT_ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for me, other in (("p1", "p2"), ("p2", "p1"))]
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
        assert float(out.strip()) == float(np.arange(1000).sum())
    assert len((tmp_path / "computations.txt").read_text().split()) == 1
    files = _npz_files(root)
    assert len(files) == 1
    np.testing.assert_array_equal(ArtefactCache(root).load("shared", files[0].stem)["a"], np.arange(1000))
    assert not _tmp_files(root)


def test_entries_and_clear(cache):
    cache.get_or_compute("neighbours", CFG, "fp", Counter())
    cache.get_or_compute("neighbours", CFG, "fp2", Counter())
    cache.get_or_compute("other", {"x": 1}, "fp", Counter())
    entries = cache.entries()
    assert sorted(e.kind for e in entries) == ["neighbours", "neighbours", "other"]
    for e in entries:
        assert e.path.is_file() and e.bytes == e.path.stat().st_size
        assert e.meta["config"] in (CFG, {"x": 1})
    assert cache.usage() == (3, sum(e.bytes for e in entries))
    broken = entries[0].path
    broken.write_bytes(b"not a zip")
    assert [e.meta for e in cache.entries() if e.path == broken] == [{"corrupt": True}]

    assert cache.clear("neighbours") >= 2
    assert [e.kind for e in cache.entries()] == ["other"]
    assert cache.clear() >= 1
    assert cache.entries() == []
    assert cache.clear() == 0


def test_file_digests_follow_file_changes(cache, tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    got = cache.file_digests([str(a), str(b), "", str(tmp_path / "missing")])
    assert got == [file_digest(a), file_digest(b), "", ""]
    assert got[0] != got[1]
    a.write_bytes(b"ONE")  # same size: the changed modification time must be noticed
    st = a.stat()
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert cache.file_digests([str(a)]) == [file_digest(a)] != [got[0]]


# ---------------------------------------------------------------- RowStore

def _rows(values: list[float], d: int = 4) -> np.ndarray:
    return np.repeat(np.asarray(values, np.float32)[:, None], d, axis=1)


def test_rowstore_round_trip_and_missing_keys(cache):
    store = RowStore(cache, "image", {"backbone": "tiny"})
    rows, found = store.get(["a", "b"])
    assert rows is None and found.tolist() == [False, False]
    store.put(["a", "b", "c"], _rows([1, 2, 3]))
    store.put([], np.zeros((0, 4), np.float32))
    rows, found = store.get(["c", "zz", "a"])
    assert found.tolist() == [True, False, True]
    assert rows.dtype == np.float32 and rows.shape == (3, 4)
    np.testing.assert_array_equal(rows, _rows([3, 0, 1]))
    assert len(store) == 3
    # a different config is a different store
    other = RowStore(cache, "image", {"backbone": "other"})
    assert other.get(["a"])[1].tolist() == [False]


def test_rowstore_merges_shards_without_losing_rows(cache):
    store = RowStore(cache, "text", {"m": 1}, max_shards=3)
    for i in range(7):
        store.put([f"k{i}", f"j{i}"], _rows([i, 100 + i]))
        assert len(store._shards()) <= 3
    keys = [f"k{i}" for i in range(7)] + [f"j{i}" for i in range(7)]
    rows, found = store.get(keys)
    assert found.all()
    np.testing.assert_array_equal(rows, _rows(list(range(7)) + [100 + i for i in range(7)]))
    assert len(store) == 14
    assert not _tmp_files(cache.root)


def test_rowstore_corrupt_shard_is_dropped_and_its_keys_missing(cache):
    store = RowStore(cache, "image", {"m": 1})
    store.put(["a", "b"], _rows([1, 2]))
    store.put(["c"], _rows([3]))
    first = store._shards()[0]
    first.write_bytes(first.read_bytes()[:40])
    rows, found = store.get(["a", "b", "c"])
    assert found.tolist() == [False, False, True]
    np.testing.assert_array_equal(rows[2], _rows([3])[0])
    assert not first.exists()


def test_rowstore_merge_survives_a_corrupt_shard(cache):
    store = RowStore(cache, "image", {"m": 1}, max_shards=2)
    store.put(["a"], _rows([1]))
    store.put(["b"], _rows([2]))
    first = store._shards()[0]
    first.write_bytes(b"garbage")
    store.put(["c"], _rows([3]))  # the third shard triggers a merge that meets the corrupt one
    rows, found = store.get(["a", "b", "c"])
    assert found.tolist() == [False, True, True]
    np.testing.assert_array_equal(rows[1:], _rows([2, 3]))
    assert len(store._shards()) <= 2


def test_frames_round_trip_through_the_cache(tmp_path):
    from core.cache import arrays_frame, frame_arrays
    frame = pd.DataFrame({"cluster": [0, 1], "name": ["Black dress", "Striped top"], "ari": [0.5, np.nan],
                          "eps": [0.1, 0.2]})
    cache = ArtefactCache(tmp_path)
    got = arrays_frame(cache.get_or_compute("frames", {"v": 1}, "x", lambda: frame_arrays(frame)))
    pd.testing.assert_frame_equal(got, frame, check_dtype=False)
    assert arrays_frame(frame_arrays(frame.iloc[:0])).empty


def test_a_json_report_round_trips_through_one_artefact(cache):
    report = {"label": "pattern", "k": 10, "split": {"train": 6, "test": 2}, "scores": [0.5, float("nan"), None]}
    arrays = json_arrays(report, "result")
    assert list(arrays) == ["result"] and arrays["result"].shape == () and arrays["result"].dtype.kind == "U"
    cache.save("evaluation", "k1", arrays)
    back = json_value(cache.load("evaluation", "k1"), "result")
    assert back["split"] == report["split"] and back["scores"][0] == 0.5 and np.isnan(back["scores"][1])
    assert back["scores"][2] is None
    assert json_value(cache.load("evaluation", "missing"), "result") is None
    assert json_value(json_arrays([1, 2])) == [1, 2]  # the array is called "report" unless named


def test_rowstore_merges_only_the_small_shards(cache):
    """A merged shard past merge_bytes stays as it is: later merges take only the shards still small, so a
    build's rows are not rewritten again and again, and nothing is lost."""
    store = RowStore(cache, "text", {"m": 1}, max_shards=2, merge_bytes=2_000)  # a few puts of 10 rows
    for i in range(30):
        store.put([f"k{i}-{j}" for j in range(10)], _rows(list(range(10 * i, 10 * i + 10))))
        assert sum(_size(p) < 2_000 for p in store._shards()) <= 2
    big = [p for p in store._shards() if _size(p) >= 2_000]
    assert len(big) >= 2  # sealed shards, each left alone once past the size
    rows, found = store.get([f"k{i}-{j}" for i in range(30) for j in range(10)])
    assert found.all()
    np.testing.assert_array_equal(rows, _rows(list(range(300))))
    assert len(store) == 300 and not _tmp_files(cache.root)


def test_rowstore_gives_a_key_asked_twice_both_times(cache):
    store = RowStore(cache, "text", {"m": 1})
    store.put(["a", "b"], _rows([1, 2]))
    store.put(["c"], _rows([3]))
    rows, found = store.get(["c", "a", "zz", "a", ""])
    assert found.tolist() == [True, True, False, True, False]
    np.testing.assert_array_equal(rows, _rows([3, 1, 0, 1, 0]))
    assert store.get([])[0].shape == (0, 4)
