"""gpunn.rng: random streams keyed by words (seed, purpose, index...), drawn in the device's memory, each
regenerated from its words alone."""
import threading

import numpy
import pytest

from gpunn.backend import resolve
from gpunn.rng import DeviceRNG, host_rng

OTHER_WORDS = [(4, "shuffle", 1), (3, "teacher", 1), (3, "shuffle", 2), (3, "shuffle")]  # "teacher": as long


def test_every_word_keys_a_host_stream_and_the_same_words_give_the_same_draws():
    first = host_rng(3, "shuffle", 1).permutation(50)
    numpy.testing.assert_array_equal(host_rng(3, "shuffle", 1).permutation(50), first)
    for words in OTHER_WORDS:
        assert (host_rng(*words).permutation(50) != first).any(), words


def test_every_word_keys_a_device_stream_and_the_same_words_give_the_same_draws(device):
    """On a GPU one generator per device (thread, CUDA stream) is re-seeded for each stream: the same words after
    other streams give the first draws again."""
    backend = resolve(device)
    with backend.use():
        def draws(*words):
            return backend.to_host(DeviceRNG(backend, *words).permutation(50))

        first = draws(3, "shuffle", 1)
        for words in OTHER_WORDS:
            assert (draws(*words) != first).any(), words
        numpy.testing.assert_array_equal(draws(3, "shuffle", 1), first)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_draws_come_in_the_dtype_asked_for_and_uniform_ones_within_their_bounds(device, dtype):
    backend = resolve(device)
    with backend.use():
        rng = DeviceRNG(backend, 0, "draws")
        normal, uniform = rng.normal((500, 2), dtype), rng.uniform((500, 2), -2.0, 5.0, dtype)
    assert normal.dtype == dtype and uniform.dtype == dtype
    normal, uniform = backend.to_host(normal), backend.to_host(uniform)
    assert -2.0 <= uniform.min() < -1.0 and 4.0 < uniform.max() <= 5.0
    assert abs(normal.mean()) < 0.2 and 0.8 < normal.std() < 1.2


@pytest.mark.gpu
def test_each_thread_and_device_draws_from_a_cuRAND_generator_of_its_own(gpu):
    """One generator per (device, thread, CUDA stream): two threads drawing from one would interleave their
    streams; a generator lives on the device it was made on (made there whatever device is current)."""
    if gpu.xp.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two devices")
    with gpu.use():
        here = DeviceRNG(gpu, 1, "a")._gen
        there = []
        thread = threading.Thread(target=lambda: there.append(DeviceRNG(gpu, 1, "a")._gen))
        thread.start()
        thread.join()
        assert there[0] is not here and DeviceRNG(gpu, 2, "b")._gen is here
    second = resolve("cuda:1")
    on_1 = DeviceRNG(second, 1, "a")  # made while device 0 is current
    assert on_1._gen is not here
    with second.use():
        assert on_1.normal((4,), "float32").device.id == 1
