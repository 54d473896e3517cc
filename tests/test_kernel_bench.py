"""The kernel benchmark (python -m gpunn.bench.kernels) keeps working (run tiny, on the CPU; its numbers are not asserted)."""
import json
import sys

import pytest
import waiting

from gpunn.bench import kernels


def test_kernel_bench_runs_and_reports_every_op(tmp_path):
    out = tmp_path / "kernels.json"
    proc = waiting.run([sys.executable, "-m", "gpunn.bench.kernels", "--device", "cpu", "--sizes", "12",
                        "--repeat", "2", "--json", str(out)], timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert {r["op"] for r in rows} >= {"adam step", "backward relu from A", "loss + dA[L]"}
    assert all(r["gb_per_s"] > 0 and r["elements"] == 4096 for r in rows)
    assert "device-to-device copy" in proc.stdout


def test_an_option_given_twice_is_refused_as_gpunns_commands_refuse_it(capsys):
    """argparse kept the last value without a word (--sizes 10 --sizes 11 measured 2^11 alone), where every gpunn
    command refuses a repeated option (cli.common.refuse_repeated); an abbreviation is refused, naming the option."""
    for argv, said in ((["--device", "cpu", "--repeat", "1", "--sizes", "10", "--sizes", "11"],
                        "--sizes is given twice (10, then 11), and only the last would count: give it once; several "
                        "values go in one comma-separated list: --sizes 10,11"),
                       (["--device", "cpu", "--rep", "1"], "--rep: options are written in full: did you mean --repeat?")):
        with pytest.raises(SystemExit) as exited:
            kernels.main(argv)
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("python -m gpunn.bench.kernels: error: ") and said in err, err


def test_the_stream_benchmark_refuses_a_repeated_or_shortened_option(capsys):
    """python -m gpunn.bench.stream by the same rules (cli.common.Parser.parse_strictly): argparse kept the last
    --rows of two and ran --epoch as --epochs."""
    from gpunn.bench import stream

    for argv, said in ((["synthetic", "--rows", "10", "--rows", "20"],
                        "--rows is given twice (10, then 20), and only the last would count: give it once"),
                       (["synthetic", "--epoch", "1"], "--epoch: options are written in full: did you mean --epochs?")):
        with pytest.raises(SystemExit) as exited:
            stream.main(argv)
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("python -m gpunn.bench.stream: error: ") and said in err, err


def test_the_stream_benchmark_in_memory_without_rows_says_it_needs_them(capsys):
    """synthetic-memory has no row count of its own (the suite passes --memory-rows): without --rows it ended in
    a traceback, 'n_samples must be a positive integer, got None', from datasets.make."""
    from gpunn.bench import stream

    with pytest.raises(SystemExit) as exited:
        stream.main(["synthetic-memory", "--device", "cpu"])
    assert exited.value.code == 2
    assert "synthetic-memory needs --rows" in capsys.readouterr().err
