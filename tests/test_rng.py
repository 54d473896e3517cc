"""gpunn.rng: random streams keyed by words (seed, purpose, index...), drawn in the device's memory, each
regenerated from its words alone."""
import threading
import zlib

import numpy
import pytest
from stand_in import is_stand_in

from gpunn.backend import resolve
from gpunn.rng import DeviceRNG, hash_permutation, host_rng, normals, uniforms

OTHER_WORDS = [(4, "shuffle", 1), (3, "teacher", 1), (3, "shuffle", 2), (3, "shuffle")]  # "teacher": as long


def test_every_word_keys_a_host_stream_and_the_same_words_give_the_same_draws():
    first = host_rng(3, "shuffle", 1).permutation(50)
    numpy.testing.assert_array_equal(host_rng(3, "shuffle", 1).permutation(50), first)
    for words in OTHER_WORDS:
        assert (host_rng(*words).permutation(50) != first).any(), words


def test_every_word_keys_a_device_stream_and_the_same_words_give_the_same_draws(device):
    """A stream is its words' alone: the same words after other streams give the first draws again."""
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


def test_cpu_draws_are_numpys_generator_seeded_by_the_words():
    """The CPU's rows (datasets, bootstrap resamples) are NumPy's default_rng of the words' SeedSequence, draw after
    draw: what they were before the GPU's draws moved to Philox."""
    rng = DeviceRNG(resolve("cpu"), 3, "teacher", 2)
    want = numpy.random.default_rng(numpy.random.SeedSequence([3, zlib.crc32(b"teacher"), 2]))
    numpy.testing.assert_array_equal(rng.normal((4, 3), "float64"), want.standard_normal((4, 3)))
    numpy.testing.assert_array_equal(rng.uniform((5,), -1.0, 2.0, "float32"),
                                     want.uniform(-1.0, 2.0, 5).astype("float32"))


def _philox_key(*words):
    """The Philox key of a stream on a GPU: the third word of its words' SeedSequence state."""
    words = [w if isinstance(w, int) else zlib.crc32(w.encode()) for w in words]
    return int(numpy.random.SeedSequence(words).generate_state(3, numpy.uint64)[2])


def _close_to_reference(got, want, dtype, exact):
    if exact:
        numpy.testing.assert_array_equal(got, want)
    else:  # the device's log, cos and sin against NumPy's: a few ulps
        eps = numpy.finfo(dtype).eps
        numpy.testing.assert_allclose(got, want, rtol=16 * eps, atol=4 * eps)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_draws_are_philox_keyed_by_the_words_draw_after_draw(gpu, dtype):
    """On the device, kernels/random.cu against its NumPy reference (tests/philox_reference.py): a stream's normal
    draw then its uniform one are draws 0 and 1 under the words' key. The uniforms exactly (float64: the top 53
    bits of two Philox words; float32: a word rounded, both with the same two roundings of low + scale u), the
    normals to a few ulps (the device's log, cos and sin against NumPy's). Then several streams in one launch
    (gpunn.rng.normals and uniforms, as a synthetic window draws its chunks): each stream's rows are those it
    draws alone."""
    import philox_reference as ref

    n, words = 4099, (5, "teacher", 9)  # not a whole number of Philox blocks
    key = _philox_key(*words)
    fake = is_stand_in(gpu.xp)
    with gpu.use():
        rng = DeviceRNG(gpu, *words)
        normal, uniform = gpu.to_host(rng.normal((n,), dtype)), gpu.to_host(rng.uniform((n,), -2.0, 5.0, dtype))
        t = numpy.dtype(dtype).type
        _close_to_reference(normal, ref.draw("normal", key, 0, n, dtype), dtype, exact=fake)
        numpy.testing.assert_array_equal(uniform, ref.draw("uniform", key, 1, n, dtype, t(-2.0), t(7.0)))
        keyed = [(5, "teacher", m) for m in (3, 0, 8)]
        rows = [7, 1, 300]
        together = gpu.to_host(normals([DeviceRNG(gpu, *w) for w in keyed], rows, 3, dtype))
        alone = numpy.concatenate([gpu.to_host(DeviceRNG(gpu, *w).normal((r, 3), dtype)) for w, r in zip(keyed, rows)])
        numpy.testing.assert_array_equal(together, alone)
        between = gpu.to_host(uniforms([DeviceRNG(gpu, *w) for w in keyed], rows, 2, 0.0, 1.0, dtype))
    assert between.shape == (308, 2) and 0 < between.min() and between.max() <= 1
    numpy.testing.assert_array_equal(between[:7].reshape(-1), ref.draw("uniform", _philox_key(*keyed[0]), 0, 14, dtype))


@pytest.mark.gpu
def test_gpu_draws_hold_no_generator_and_are_the_same_on_any_thread_stream_and_device(gpu):
    """A stream's draws on a GPU are a function of its words: the same on another thread, on a side stream (where a
    synthetic source generates its windows), on another device (made there, with that device current), and on a
    thread beside another thread's open CUDA graph capture (where cuRAND's re-seeds and draws failed with
    CURAND_STATUS_LAUNCH_FAILURE on an H200). No cuRAND generator is made."""
    import cupy

    from gpunn.data.pipeline import side_stream

    fake = cupy.state if is_stand_in(cupy) else None
    made = fake.generators if fake is not None else None

    def draw():
        rng = DeviceRNG(gpu, 1, "a")
        return gpu.to_host(rng.normal((2100,), "float32")), gpu.to_host(rng.uniform((700,), 0.0, 1.0, "float64"))

    def on_a_thread():
        box = []

        def run():
            try:
                with gpu.use():
                    box.append(draw())
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                box.append(exc)
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        assert not isinstance(box[0], Exception), box[0]
        return box[0]

    with gpu.use():
        here = draw()
        elsewhere = {"another thread": on_a_thread()}
        with side_stream(gpu, "generate"):
            elsewhere["a side stream"] = draw()
        stream = cupy.cuda.Stream(non_blocking=True)
        with stream:
            stream.begin_capture(mode=cupy.cuda.runtime.streamCaptureModeRelaxed)
            try:
                elsewhere["beside a capture"] = on_a_thread()
            finally:
                stream.end_capture()
    if cupy.cuda.runtime.getDeviceCount() > 1:
        second = resolve("cuda:1")
        with second.use():
            on_1 = DeviceRNG(second, 1, "a").normal((2100,), "float32")
            assert on_1.device.id == 1
            elsewhere["device 1"] = (second.to_host(on_1), here[1])
    for where, (normal, uniform) in elsewhere.items():
        numpy.testing.assert_array_equal(normal, here[0], err_msg=where)
        numpy.testing.assert_array_equal(uniform, here[1], err_msg=where)
    if fake is not None:
        assert fake.generators == made


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
    fake = cupy.state if is_stand_in(cupy) else None
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
