"""spec2img.workers.OrderedPool, the pool prediction's front end renders through: results in the order asked
for, bulk data through shared memory slots that are reused, a task's exception raised where it is collected,
and a worker that dies failing only the task it ran (named how it ended) and being replaced."""
import multiprocessing
import os
import signal

import numpy as np
import pytest

from spec2img.workers import OrderedPool, WorkerDied, describe_exit

FORK = multiprocessing.get_context("fork")


def square_into(arg, out):
    """Write arg**2 (as 1000 float64) into the slot when there is one; say where it went."""
    values = np.full(1000, float(arg) ** 2)
    if out is None:
        return ("inline", values, os.getpid())
    np.frombuffer(out, np.float64, 1000)[:] = values
    return ("slot", None, os.getpid())


def read_back(result, out):
    where, values, pid = result
    return where, (values if where == "inline" else np.frombuffer(out, np.float64, 1000).copy()), pid


def fail_on_three(arg, out):
    if arg == 3:
        raise ValueError("three is not allowed")
    return arg


def die_on_three(arg, out):
    if arg == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return arg, os.getpid()


def test_results_come_back_right_in_any_order_through_reused_slots():
    with OrderedPool(2, FORK, slots=3, slot_bytes=8000) as pool:
        tasks = [pool.submit(square_into, k, read_back) for k in range(10)]     # more tasks than slots
        got = {k: tasks[k].get() for k in (9, 0, 5, 1, 2, 3, 4, 6, 7, 8)}
    assert all(np.array_equal(values, np.full(1000, float(k) ** 2)) for k, (_, values, _) in got.items())
    where = [got[k][0] for k in range(10)]
    assert where[:3] == ["slot"] * 3 and "inline" in where           # slots ran out: the rest came by pipe
    assert len({pid for _, _, pid in got.values()}) == 2 and os.getpid() not in {pid for _, _, pid in got.values()}
    with OrderedPool(2, FORK, slots=2, slot_bytes=8000) as pool:        # slots freed as results are collected
        assert [pool.submit(square_into, k, read_back).get()[0] for k in range(6)] == ["slot"] * 6


def test_a_task_that_raises_raises_where_it_is_collected_and_the_others_carry_on():
    with OrderedPool(2, FORK) as pool:
        tasks = [pool.submit(fail_on_three, k) for k in range(6)]
        with pytest.raises(ValueError, match="three is not allowed"):
            tasks[3].get()
        assert [tasks[k].get() for k in (0, 1, 2, 4, 5)] == [0, 1, 2, 4, 5]


def test_a_worker_that_dies_fails_the_task_it_ran_and_its_replacement_runs_the_rest():
    with OrderedPool(1, FORK) as pool:
        first_pid = pool.submit(die_on_three, 0).get()[1]
        tasks = [pool.submit(die_on_three, k) for k in (1, 2, 3, 4, 5)]  # 4 and 5 wait behind 3 on the same worker
        with pytest.raises(WorkerDied, match="killed by SIGKILL"):
            tasks[2].get()
        answers = [tasks[k].get() for k in (0, 1, 3, 4)]
        again, pid = pool.submit(die_on_three, 6).get()
    assert [k for k, _ in answers] == [1, 2, 4, 5] and again == 6
    assert {p for _, p in answers[:2]} == {first_pid} and {p for _, p in answers[2:]} == {pid} != {first_pid}


def sleep_long(arg, out):
    import time
    time.sleep(60)


def test_closing_the_pool_stops_its_workers_even_mid_task():
    pool = OrderedPool(2, FORK)
    pids = {pool.submit(die_on_three, k).get()[1] for k in (0, 1, 2)}
    processes = list(pool._workers)
    pool.submit(sleep_long, 0)
    pool.close()
    assert len(pids) in (1, 2) and all(not w.process.is_alive() for w in processes)


def test_how_a_process_ended_reads_as_words():
    assert describe_exit(-9) == "killed by SIGKILL" and describe_exit(-11) == "killed by SIGSEGV"
    assert describe_exit(3) == "exit code 3" and describe_exit(None) == "still running"
