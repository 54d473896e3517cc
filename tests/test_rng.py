"""gpunn.rng: random streams keyed by words (seed, purpose, index...), drawn in the device's memory, each
regenerated from its words alone."""
import threading
import zlib

import numpy
import pytest

from gpunn.backend import resolve
from gpunn.rng import DeviceRNG, hash_permutation, host_rng

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


def _mix64_by_python_ints(z):
    """splitmix64's finalizer on one Python int, modulo 2**64: the reference hash_permutation's arrays follow."""
    mask = (1 << 64) - 1
    z ^= z >> 30
    z = (z * 0xBF58476D1CE4E5B9) & mask
    z ^= z >> 27
    z = (z * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def test_a_gpu_shuffle_is_the_order_of_its_rows_splitmix_hashes_keyed_by_its_words():
    """On a GPU a permutation is the order of the high halves of the rows' 64-bit hashes (gpunn.rng.hash_permutation):
    a function of the words alone, computed here by Python ints."""
    mask = (1 << 64) - 1
    key0, key1 = 0x0123456789ABCDEF, 0xFEDCBA9876543210
    for n in (0, 1, 2, 7, 300):
        hashes = [_mix64_by_python_ints(_mix64_by_python_ints((i * 0x9E3779B97F4A7C15 + key0) & mask) ^ key1) >> 32
                  for i in range(n)]
        assert len(set(hashes)) == n  # no ties at these sizes, so the order is the keys' alone
        got = hash_permutation(numpy, n, numpy.uint64(key0), numpy.uint64(key1))
        assert got.tolist() == sorted(range(n), key=hashes.__getitem__), n
    first = hash_permutation(numpy, 1000, numpy.uint64(key0), numpy.uint64(key1))
    assert abs(numpy.corrcoef(first, numpy.arange(1000))[0, 1]) < 0.1  # no trace of the rows' order
    assert (hash_permutation(numpy, 1000, numpy.uint64(key0 + 1), numpy.uint64(key1)) != first).mean() > 0.9
    assert (hash_permutation(numpy, 1000, numpy.uint64(key0), numpy.uint64(key1 + 1)) != first).mean() > 0.9


@pytest.mark.gpu
def test_a_shuffle_on_the_gpu_is_drawn_beside_another_threads_capture_and_without_curand(gpu):
    """On an H200 an epoch's shuffle on one thread (CuPy's RandomState.permutation: cuRAND) failed with
    CURAND_STATUS_LAUNCH_FAILURE while another thread held a CUDA graph capture open (a relaxed one, on a
    non-blocking stream: as gpunn's captures). The shuffle takes no cuRAND generator now: the same permutation as
    the formula's on the host, drawn on a thread beside another thread's open capture as on its own."""
    import cupy

    n, words = 2100, (3, "shuffle", 1)
    keys = numpy.random.SeedSequence([3, zlib.crc32(b"shuffle"), 1]).generate_state(2, numpy.uint64)
    expected = hash_permutation(numpy, n, *keys)
    fake = getattr(cupy, "state", None) if str(getattr(cupy, "__version__", "")).endswith("-fake") else None
    made = fake.generators if fake is not None else None
    with gpu.use():
        numpy.testing.assert_array_equal(gpu.to_host(DeviceRNG(gpu, *words).permutation(n)), expected)
        stream, box = cupy.cuda.Stream(non_blocking=True), []

        def draw():
            try:
                with gpu.use():
                    box.append(gpu.to_host(DeviceRNG(gpu, *words).permutation(n)))
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                box.append(exc)

        with stream:
            stream.begin_capture(mode=cupy.cuda.runtime.streamCaptureModeRelaxed)
            try:
                thread = threading.Thread(target=draw)
                thread.start()
                thread.join()
            finally:
                stream.end_capture()
    assert not isinstance(box[0], Exception), box[0]
    numpy.testing.assert_array_equal(box[0], expected)
    if fake is not None:
        assert fake.generators == made  # no cuRAND generator made for a shuffle
