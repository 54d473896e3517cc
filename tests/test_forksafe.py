"""gpunn.forksafe.ForkSafeLock: the lock a forked child gets anew (the module-level ones that use it: test_cpu_ops's
test_a_child_forked_while_another_thread_holds_one_of_gpunns_locks_finds_it_released; a Parquet source's:
test_data_sources)."""
import gc
import os
import sys
import weakref

import pytest
import waiting

from gpunn.forksafe import ForkSafeLock

FORK_INSIDE_WITH = """
import os, signal, threading
from gpunn.forksafe import ForkSafeLock

lock = ForkSafeLock()
with lock.current:
    pid = os.fork()
    if pid == 0:
        signal.alarm(10)
        other = threading.Thread(target=lambda: lock.current.acquire())  # a thread of the child: the child's lock
        other.start()
        other.join()
        print("child's lock taken by its other thread:", lock.current.locked(), flush=True)
        lock.current.release()
if pid == 0:  # the block left: the child released its copy of the lock it took, not its new one
    with lock.current:
        print("child's lock after the block:", lock.current.locked(), flush=True)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("parent's lock after the block:", lock.current.locked(), flush=True)
raise SystemExit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork here")
def test_a_fork_inside_the_with_block_leaves_both_processes_with_the_lock_released():
    """The ``with`` releases the lock it took, in the parent and in the child; the child's other threads take the
    child's new lock meanwhile. A __exit__ that released "the current lock" would release the child's new one
    instead (RuntimeError: release unlocked lock, or another thread's hold), and a lock not renewed would hang the
    child's other thread (SIGALRM after 10 s, exit status -14). A fresh process, as a fork from pytest's own
    threads could deadlock."""
    proc = waiting.run([sys.executable, "-c", FORK_INSIDE_WITH], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["child's lock taken by its other thread: True",
                                        "child's lock after the block: True",
                                        "parent's lock after the block: False"]


def test_a_lock_goes_with_its_owner():
    """The child's hook holds the locks weakly: a data source's lock does not outlive the source."""
    lock = ForkSafeLock()
    gone = weakref.ref(lock)
    del lock
    gc.collect()
    assert gone() is None


EVERY_LOCK_RENEWED_IN_THE_CHILD_ONLY = """
import os
from gpunn.forksafe import ForkSafeLock

locks = [ForkSafeLock() for _ in range(3)]
taken = [lock.current for lock in locks]
for held in taken:
    held.acquire()  # held at the fork, as by another thread of the parent
pid = os.fork()
if pid == 0:
    os._exit(0 if all(lock.current is not held and not lock.current.locked() for lock, held in zip(locks, taken)) else 1)
_, status = os.waitpid(pid, 0)
print("child renewed every lock:", os.waitstatus_to_exitcode(status) == 0, flush=True)
print("parent kept its locks:", all(lock.current is held and held.locked() for lock, held in zip(locks, taken)), flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork here")
def test_the_child_gets_every_lock_anew_and_the_parent_keeps_its_own():
    """Each of a process's ForkSafeLocks is new and free in the child; the parent's are the very locks it held
    (renewing them there too would let a second thread into a block another thread is in)."""
    proc = waiting.run([sys.executable, "-c", EVERY_LOCK_RENEWED_IN_THE_CHILD_ONLY], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["child renewed every lock: True", "parent kept its locks: True"]
