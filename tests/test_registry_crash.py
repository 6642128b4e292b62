"""Crash safety of removals: a process deleting models is killed (SIGKILL) at random points; the
registry directory must still load, without every acknowledged removal and with every other model."""
from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from pickwise.registry import load_registry
from tests.registry_samples import model, write

CHILD = textwrap.dedent("""
    import sys
    from pickwise.registry import Registry

    registry = Registry(sys.argv[1])
    for name in sys.argv[2:]:
        print("start", name, flush=True)
        registry.remove_model(name)
        print("done", name, flush=True)
""")


def _registry(directory):
    """24 models: three files of six (rewritten on each removal) and six files of one (deleted)."""
    names = []
    for f in range(3):
        group = [f"multi{f}-{i}" for i in range(6)]
        write(directory, f"multi{f}.yaml", [model(n, notes=f"# comment-like text {n}") for n in group])
        names += group
    for i in range(6):
        write(directory, f"single{i}.yaml", model(f"single{i}"))
        names.append(f"single{i}")
    return names


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
@pytest.mark.parametrize("trial", range(6))
def test_a_removal_killed_at_any_point_leaves_a_registry_that_loads(tmp_path, trial):
    rng = random.Random(trial)
    names = _registry(tmp_path)
    order = rng.sample(names, len(names) - 1)  # the last model cannot be removed
    kill_after = rng.randrange(0, len(order) // 2)  # acknowledged removals before the kill
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), *order],
                             stdout=subprocess.PIPE, text=True)
    started, done = [], []
    deadline = time.monotonic() + 60
    try:
        while len(done) < kill_after and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            kind, name = line.split()
            (started if kind == "start" else done).append(name)
        time.sleep(rng.uniform(0, 0.03))  # somewhere inside the next removal, or between two
    finally:
        child.send_signal(signal.SIGKILL)
        # through the same buffered reader as the lines above: communicate() reads the pipe itself and
        # would miss what readline() had already buffered (acknowledged removals would look lost)
        rest = child.stdout.read()
        child.wait(timeout=30)
    # lines acknowledged before the kill landed; the kill can cut the last one mid-write, and a line
    # without its newline was never fully acknowledged
    for line in rest.splitlines(keepends=True):
        if line.endswith("\n"):
            kind, name = line.split()
            (started if kind == "start" else done).append(name)
    assert len(done) >= kill_after, "the child did not get far enough"

    snapshot = load_registry(tmp_path)  # temp files of a killed write are dotfiles: never loaded
    assert done == order[:len(done)]
    # removals run one after another: at most the next one in order was under way, acknowledged or not
    in_flight = set(order[len(done):len(done) + 1])
    assert not set(done) & set(snapshot.names())
    assert set(names) - set(done) - in_flight <= set(snapshot.names())
