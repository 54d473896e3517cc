"""The kernel benchmark (python -m gpunn.bench.kernels) keeps working (run tiny, on the CPU; its numbers are not asserted)."""
import json
import sys

import waiting


def test_kernel_bench_runs_and_reports_every_op(tmp_path):
    out = tmp_path / "kernels.json"
    proc = waiting.run([sys.executable, "-m", "gpunn.bench.kernels", "--device", "cpu", "--sizes", "12",
                        "--repeat", "2", "--json", str(out)], timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert {r["op"] for r in rows} >= {"adam step", "backward relu from A", "loss + dA[L]"}
    assert all(r["gb_per_s"] > 0 and r["elements"] == 4096 for r in rows)
    assert "device-to-device copy" in proc.stdout
