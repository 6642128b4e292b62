"""selector.solver_output: fd 1 goes to stderr while any solve runs and comes back afterwards."""
from __future__ import annotations

import os
import threading

from pickwise.selector.solver_output import solver_stdout_to_stderr


def test_fd1_writes_go_to_stderr_only_inside_the_guard(capfd):
    os.write(1, b"before\n")
    with solver_stdout_to_stderr():
        os.write(1, b"chatter\n")
        with solver_stdout_to_stderr():  # nested solves (LP rounding repairs with an exact MILP)
            os.write(1, b"nested\n")
        os.write(1, b"still inside\n")
    os.write(1, b"after\n")
    out, err = capfd.readouterr()
    assert out == "before\nafter\n"
    assert err == "chatter\nnested\nstill inside\n"


def test_overlapping_solves_in_threads_restore_stdout(capfd):
    inside = threading.Barrier(4)

    def solve(i: int) -> None:
        with solver_stdout_to_stderr():
            inside.wait(timeout=10)  # all four guards are open at once
            os.write(1, f"t{i}\n".encode())
            inside.wait(timeout=10)

    threads = [threading.Thread(target=solve, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    os.write(1, b"after\n")
    out, err = capfd.readouterr()
    assert out == "after\n"
    assert sorted(err.split()) == ["t0", "t1", "t2", "t3"]


def test_pulp_highs_prints_no_banner(capfd):
    """HiGHS printed 'Running HiGHS ...' on making its instance, before msg=False could silence it."""
    import numpy as np

    from pickwise.selector.batch import plan_batch

    plan = plan_batch(np.array([[0.9, 0.5], [0.8, 0.6]]), np.array([[1.0, 0.1], [1.0, 0.1]]), budget=1.2,
                      solver="pulp-highs")
    assert list(plan.assignment) in ([0, 1], [1, 0])
    out, err = capfd.readouterr()
    assert out == "" and "HiGHS" not in err, err
