"""ast.parse behind one lock: the CPython race it prevents (reproduced on purpose), mutual exclusion, re-entry, the
collector paused meanwhile."""
import ast
import gc
import threading

import pytest

from core.astlock import LockedParse, affected, guard_ast_parse

SOURCE = "def f(x):\n    return [y * 2 for y in x if y]\n" * 40


class _Handoff:
    """Cyclic garbage whose finaliser, run by a collection inside thread A's parse, lets thread B parse meanwhile:
    the interleaving that garbage collection makes possible on the affected Pythons, made to happen every time."""

    def __init__(self, parse):
        self.parse, self.errors = parse, []
        self.go, self.finished = threading.Event(), threading.Event()
        self.idle, self.stop = True, False
        self.finalisers = 0  # bounded: each finaliser leaves the garbage for the next one

    def litter(self):
        a, b = _Cycle(self), _Cycle(self)
        a.other, b.other = b, a

    def hand_off(self):
        self.finalisers += 1
        if self.finalisers > 200:
            return
        if self.idle:  # B free: let it parse a whole module while A is mid-way, and wait briefly for it
            self.idle = False
            self.finished.clear()
            self.go.set()
            self.finished.wait(0.05)
        self.litter()

    def thread_b(self):
        while not self.stop:
            if self.go.wait(0.05):
                self.go.clear()
                try:
                    self.parse("x = [1, (2, {3: 4})]")
                except SystemError as e:
                    self.errors.append(e)
                self.idle = True
                self.finished.set()

    def run(self) -> list[Exception]:
        """Thread A parses ``SOURCE`` with collections (and so hand-offs) between its allocations."""
        b = threading.Thread(target=self.thread_b, daemon=True)
        b.start()
        threshold = gc.get_threshold()
        gc.collect()
        gc.set_threshold(1)
        try:
            self.litter()
            try:
                self.parse(SOURCE)
            except SystemError as e:
                self.errors.append(e)
        finally:
            self.finalisers = 10**9
            gc.set_threshold(*threshold)
            self.stop = True
            b.join(5)
            gc.collect()
        return self.errors


class _Cycle:
    def __init__(self, handoff: _Handoff):
        self.handoff = handoff

    def __del__(self):
        self.handoff.hand_off()


@pytest.mark.skipif(not affected(), reason="this Python's AST constructor is thread-safe (not 3.11.0-3.11.7)")
def test_the_race_is_real_without_the_lock():
    errors = _Handoff(ast.parse if not isinstance(ast.parse, LockedParse) else ast.parse.parse).run()
    assert any("recursion depth mismatch" in str(e) for e in errors), errors


def test_the_lock_prevents_it():
    original = ast.parse.parse if isinstance(ast.parse, LockedParse) else ast.parse
    assert _Handoff(LockedParse(original)).run() == []


def test_one_thread_at_a_time_reentrant_and_without_collections():
    inside, most, collecting = [0], [0], []
    entered, release = threading.Event(), threading.Event()

    def slow_parse(source, depth=0):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        collecting.append(gc.isenabled())
        if depth == 0 and source == "first":
            entered.set()
            release.wait(5)
            locked(source, depth=1)  # re-entry from the same thread (a warning's handler parsing) does not deadlock
        inside[0] -= 1
        return ast.Module(body=[], type_ignores=[])

    locked = LockedParse(slow_parse)
    first = threading.Thread(target=locked, args=("first",))
    second = threading.Thread(target=locked, args=("second",))
    first.start()
    assert entered.wait(5)
    second.start()
    second.join(0.2)
    assert second.is_alive()  # waiting for the lock the first holds
    release.set()
    first.join(5)
    second.join(5)
    assert not first.is_alive() and not second.is_alive()
    assert most[0] == 2  # only the first's own re-entry was ever inside twice
    assert collecting == [False, False, False] and gc.isenabled()  # paused while parsing, resumed after


def test_guard_installs_once_on_affected_pythons(monkeypatch):
    monkeypatch.setattr(ast, "parse", ast.parse.parse if isinstance(ast.parse, LockedParse) else ast.parse)
    assert guard_ast_parse() == affected()
    if affected():
        wrapper = ast.parse
        assert isinstance(wrapper, LockedParse)
        assert guard_ast_parse() and ast.parse is wrapper  # not wrapped twice
        assert ast.literal_eval("{'descr': '<f4', 'shape': (3,)}")["shape"] == (3,)  # numpy's header read


def test_affected_versions():
    assert affected((3, 11, 0)) and affected((3, 11, 7))
    assert not affected((3, 11, 8)) and not affected((3, 12, 0)) and not affected((3, 10, 14))
