"""tests/conftest.py's stream_order_hazards fixture: a stream-ordering hazard that the stand-in (tests/fakecupy) finds
only later, when the garbage is collected or at the next copy or host wait, fails the test that made it, not the
test that runs when it is found. Run on a small generated test file, with this conftest, in a pytest of its own."""
import os
import pathlib
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

TESTS = pathlib.Path(__file__).parent

# automatic collection off: with the late checks left to it, the garbage of the first test is collected in the
# second one, as a collection triggered there by its own allocations would
TOY = '''
import gc

import fakecupy

gc.disable()
KEPT = []


def copied_from_pinned(cp, pinned):
    """An asynchronous copy from ``pinned`` on a side stream (returned)."""
    side = cp.cuda.Stream(non_blocking=True)
    x = cp.zeros(8, "float32")
    side.wait_event(cp.cuda.Stream.null.record())
    x.set(pinned, stream=side)
    return side


def test_drops_a_pinned_buffer_in_flight_into_a_reference_cycle(fake_cupy):
    pinned = fakecupy.cupyx.empty_pinned((8,), "float32")
    copied_from_pinned(fake_cupy, pinned)
    cycle = {"pinned": pinned}
    cycle["cycle"] = cycle  # freed by the garbage collector only


def test_after_the_cycle():
    gc.collect()
    fakecupy.cuda.Stream.null.synchronize()


def test_writes_a_pinned_buffer_in_flight(fake_cupy):
    pinned = fakecupy.cupyx.empty_pinned((8,), "float32")
    copied_from_pinned(fake_cupy, pinned)
    pinned[...] = 2  # the next window read into it, before the host waited for the copy
    KEPT.append(pinned)  # alive past the test: its free says nothing


def test_after_the_write():
    gc.collect()
    fakecupy.cuda.Stream.null.synchronize()  # a host wait: the in-flight bytes are compared here at the latest


def test_waits_for_its_copy(fake_cupy):
    pinned = fakecupy.cupyx.empty_pinned((8,), "float32")
    copied_from_pinned(fake_cupy, pinned).synchronize()
    pinned[...] = 3
    cycle = {"pinned": pinned}
    cycle["cycle"] = cycle


def test_frees_a_block_another_stream_still_reads(fake_cupy):
    side = fake_cupy.cuda.Stream(non_blocking=True)
    x = fake_cupy.zeros(8, "float32")  # on the null stream
    side.wait_event(fake_cupy.cuda.Stream.null.record())
    with side:
        KEPT.append(x + 1)  # side reads x
    del x  # back to the null stream's arena while side may still read it: the null stream never waits for side


def test_allocates_the_block_next():
    x = fakecupy.zeros(8, "float32")  # CuPy's pool hands it the block freed above
    x + 1
'''


def _outcomes(tmp_path):
    """{test name: [(failure or error, message)]} of the toy file run with tests/conftest.py."""
    shutil.copy(TESTS / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_toy.py").write_text(TOY)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {k: v for k, v in os.environ.items() if k != "GPUNN_FAKE_CUPY"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(TESTS.parent), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml=out.xml",
                           "test_toy.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    outcomes = {}
    for case in ET.parse(tmp_path / "out.xml").iter("testcase"):
        bad = [child for child in case if child.tag in ("failure", "error")]
        outcomes.setdefault(case.get("name"), []).extend(
            (child.tag, child.get("message", "") + "\n" + (child.text or "")) for child in bad)  # text: not cut short
    return proc, outcomes


@pytest.mark.slow
def test_a_late_found_hazard_fails_the_test_that_made_it(tmp_path):
    proc, outcomes = _outcomes(tmp_path)
    assert set(outcomes) == {"test_drops_a_pinned_buffer_in_flight_into_a_reference_cycle", "test_after_the_cycle",
                             "test_writes_a_pinned_buffer_in_flight", "test_after_the_write",
                             "test_waits_for_its_copy", "test_frees_a_block_another_stream_still_reads",
                             "test_allocates_the_block_next"}, proc.stdout[-3000:]
    made = {"test_drops_a_pinned_buffer_in_flight_into_a_reference_cycle":
            "a pinned host buffer of 32 bytes was freed while a copy from it",
            "test_writes_a_pinned_buffer_in_flight": "pinned host memory (32 bytes) was written while a copy from it"}
    for name, hazard in made.items():  # an error at the test's teardown, naming the hazard
        assert [(tag, hazard in message) for tag, message in outcomes.pop(name)] == [("error", True)], \
            proc.stdout[-3000:]
    # a block freed while another stream reads it is a hazard only when an allocation gets it, here in the next
    # test: that test fails, naming the test that freed the block
    ghost = outcomes.pop("test_allocates_the_block_next")
    assert ghost and all("(that block freed in test_toy.py::test_frees_a_block_another_stream_still_reads)"
                         in message for tag, message in ghost), proc.stdout[-3000:]
    assert outcomes == {"test_after_the_cycle": [], "test_after_the_write": [], "test_waits_for_its_copy": [],
                        "test_frees_a_block_another_stream_still_reads": []}, proc.stdout[-3000:]
