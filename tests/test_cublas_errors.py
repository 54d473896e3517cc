"""cuBLAS answering a GemmEx with an error status (tests/fakecupy's ``state.cublas_refuses``): on CuPy's handle the
fit ends with an error that says which product failed; on the graph's own handle the step falls back."""
import warnings

import numpy
import pytest

import gpunn
from gpunn.ops.cublas import COMPUTE_32F, COMPUTE_32F_FAST_TF32, COMPUTE_64F, CublasError, GemmError

NOT_SUPPORTED = 15


def _data(rows=300, features=8, outputs=2):
    rng = numpy.random.default_rng(0)
    X = rng.standard_normal((rows, features)).astype(numpy.float32)
    return X, numpy.column_stack([numpy.sin(X[:, 0]), X[:, 1] * X[:, 2]])[:, :outputs].astype(numpy.float32)


def test_a_tf32_product_cublas_refuses_says_which_product_failed(fake_cupy):
    fake_cupy.state.cublas_refuses = {COMPUTE_32F_FAST_TF32: NOT_SUPPORTED}
    X, Y = _data()
    model = gpunn.MLP([8, 16, 2], device="cuda", seed=0, precision="tf32", graph=False)
    with pytest.raises(CublasError) as caught:
        model.fit(X, Y, epochs=1, batch_size=128, verbose=False)
    said = str(caught.value)
    assert said.startswith("cublasGemmEx of (128, 8) float32 @ (8, 16) float32 -> (128, 16) float32, compute type "
                           "CUBLAS_COMPUTE_32F_FAST_TF32 (column-major m=16 n=128 k=8, transa=0 transb=0, lda=16 ldb=8 "
                           "ldc=16) failed")
    assert said.endswith("failed: CUBLAS_STATUS_NOT_SUPPORTED (15)") and caught.value.status == NOT_SUPPORTED
    assert type(caught.value.__cause__).__name__ == "_CUBLASError"  # CuPy's CUBLASError, kept as the cause


def test_an_ensembles_batched_bf16_product_cublas_refuses_says_which_product_failed(fake_cupy):
    pytest.importorskip("ml_dtypes")
    fake_cupy.state.cublas_refuses = {COMPUTE_32F: NOT_SUPPORTED}
    X, Y = _data()
    ensemble = gpunn.Ensemble([8, 16, 2], n_models=3, device="cuda", seed=0, precision="bf16", graph=False)
    with pytest.raises(CublasError, match=r"^cublasGemmStridedBatchedEx of 3 products, .* bfloat16 .*compute type "
                                          r"CUBLAS_COMPUTE_32F .*failed: CUBLAS_STATUS_NOT_SUPPORTED \(15\)$"):
        ensemble.fit(X, Y, epochs=1, batch_size=128, verbose=False)


def test_a_refusal_on_the_graphs_handle_falls_back_and_cupys_handle_then_says_what_failed(fake_cupy):
    """The graph's handle returns the status (ctypes): the capture is given up, before any update, with the product
    in its reason; the eager tf32 step asks CuPy's handle, which refuses it too and ends the fit saying so."""
    fake_cupy.state.cublas_refuses = {COMPUTE_32F_FAST_TF32: NOT_SUPPORTED}
    X, Y = _data()
    model = gpunn.MLP([8, 16, 2], device="cuda", seed=0, precision="tf32")
    with pytest.raises(CublasError, match="CUBLAS_STATUS_NOT_SUPPORTED"):
        model.fit(X, Y, epochs=1, batch_size=128, verbose=False)
    reason = model.graph_trainer.reason
    assert reason.startswith("cuBLAS refused a product on the capture handle: cublasGemmEx of (128, 8) float32 @ ")
    assert reason.endswith("failed with CUBLAS_STATUS_NOT_SUPPORTED (15)")



def test_an_ensembles_refusal_on_the_graphs_handle_falls_back_and_cupys_handle_then_says_what_failed(fake_cupy):
    """As one model's: the batched product's status on the graph's handle gives up the capture with the product in
    its reason, and CuPy's handle, refusing it too, ends the fit saying so."""
    fake_cupy.state.cublas_refuses = {COMPUTE_32F_FAST_TF32: NOT_SUPPORTED}
    X, Y = _data()
    ensemble = gpunn.Ensemble([8, 16, 2], n_models=3, device="cuda", seed=0, precision="tf32")
    with pytest.raises(CublasError, match=r"^cublasGemmStridedBatchedEx of 3 products, .* failed: "
                                          r"CUBLAS_STATUS_NOT_SUPPORTED \(15\)$"):
        ensemble.fit(X, Y, epochs=1, batch_size=128, verbose=False)
    reason = ensemble.graph_trainer.reason
    assert reason.startswith("cuBLAS refused a product on the capture handle: cublasGemmStridedBatchedEx of 3 products")
    assert reason.endswith("failed with CUBLAS_STATUS_NOT_SUPPORTED (15)")

def test_a_float64_product_refused_on_the_graphs_handle_trains_on_without_the_graph(fake_cupy):
    """CUBLAS_COMPUTE_64F refused by the graph's handle: the eager step's products are CuPy's matmul, which does
    not go through that GemmEx, so the run goes on and ends with graph=False's weights."""
    X, Y = (a.astype(numpy.float64) for a in _data())
    runs = []
    for graph in (False, None):
        fake_cupy.state.cublas_refuses = {COMPUTE_64F: NOT_SUPPORTED} if graph is None else {}
        model = gpunn.MLP([8, 16, 2], device="cuda", seed=0, dtype="float64", graph=graph)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model.fit(X, Y, epochs=2, batch_size=128, verbose=False)
        runs.append(model.params.get())
    assert not model.graph_trainer.captured and "CUBLAS_COMPUTE_64F" in model.graph_trainer.reason
    numpy.testing.assert_array_equal(runs[0], runs[1])


@pytest.mark.parametrize("status, name", [(13, "CUBLAS_STATUS_EXECUTION_FAILED"), (1, "CUBLAS_STATUS_NOT_INITIALIZED")])
def test_the_capture_handles_status_is_a_gemm_error_naming_the_product(fake_cupy, status, name):
    """Any status but 0 (CUBLAS_STATUS_SUCCESS) is a refusal, the first of cublas_api.h's too."""
    from gpunn.ops.cublas import CapturableBlas

    fake_cupy.state.cublas_refuses = {COMPUTE_32F_FAST_TF32: status}
    stream = fake_cupy.cuda.Stream(non_blocking=True)
    blas = CapturableBlas(stream.ptr)
    a, b, out = fake_cupy.ones((4, 3), "float32"), fake_cupy.ones((3, 5), "float32"), fake_cupy.empty((4, 5), "float32")
    fake_cupy.cuda.Device().synchronize()  # made on the null stream; used on the handle's
    with pytest.raises(GemmError, match=r"^cublasGemmEx of \(4, 3\) float32 @ \(3, 5\) float32 -> \(4, 5\) float32, "
                                        rf"compute type CUBLAS_COMPUTE_32F_FAST_TF32 .* failed with {name} \({status}\)$"):
        blas.gemm(a, b, out, "tf32")
    assert blas.gemm(a, b, out, "float32") is out
    stream.synchronize()
    assert out.get().tolist() == [[3.0] * 5] * 4
    blas.close()


@pytest.mark.parametrize("sizes", [[3, 3], [2, 2]])
def test_a_product_cut_into_row_blocks_that_are_not_its_rows_is_refused(fake_cupy, sizes):
    """gemm_rows (a synthetic window's products, one GemmEx per chunk) takes blocks of exactly the product's rows:
    more would read and write past them, fewer leave rows unwritten."""
    from gpunn.ops.cublas import CupyBlas

    a, b, out = fake_cupy.ones((5, 3), "float32"), fake_cupy.ones((3, 2), "float32"), fake_cupy.empty((5, 2), "float32")
    with pytest.raises(GemmError, match=rf"^blocks of {sum(sizes)} rows for a product of 5$"):
        CupyBlas().gemm_rows(a, b, out, sizes)
