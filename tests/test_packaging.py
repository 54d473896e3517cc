"""What a fresh install gets: the wheel carries the CUDA sources, and `make` picks CuPy by the driver."""
import os
import stat
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
import waiting

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    proc = waiting.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
                       timeout=300)
    if proc.returncode != 0 and "No matching distribution" in proc.stderr:
        pytest.skip(f"the build backend could not be fetched: {proc.stderr[-300:]}")
    assert proc.returncode == 0, proc.stderr
    (path,) = out.glob("gpunn-*.whl")
    return path


def test_wheel_ships_the_kernels_and_loads_them_from_the_package(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path)
    for source in ("activations.cuh", "optimizers.cuh", "elementwise.cu", "reductions.cu", "optimizers.cu"):
        assert f"gpunn/kernels/{source}" in names
    assert "gpunn/bench/naive.py" in names
    from gpunn._version import __version__  # the one copy of the version, which pyproject reads (dynamic)

    assert wheel.name.startswith(f"gpunn-{__version__}-")
    code = "import gpunn.ops.kernels as k; print(k.kernel_dir()); print(len(k.load_source('elementwise.cu')))"
    proc = waiting.run([sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)},
                       timeout=60)
    assert proc.returncode == 0, proc.stderr
    where, length = proc.stdout.split()
    assert Path(where) == tmp_path / "gpunn" / "kernels" and int(length) > 1000


@pytest.mark.parametrize("smi_output, extra, train_extra", [
    ("| NVIDIA-SMI 580.159.04   Driver Version: 580.159.04   CUDA Version: 13.0 |", ",cuda13,nvrtc", ",cuda13"),
    ("| NVIDIA-SMI 550.54.15    Driver Version: 550.54.15    CUDA Version: 12.4 |", ",cuda12", ",cuda12"),  # no 13 NVRTC
    ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.", ",nvrtc", ""),
    (None, ",nvrtc", ""),  # no nvidia-smi at all: NVRTC alone, for the compile tests; make train needs none
])
def test_make_installs_the_cupy_matching_the_driver(tmp_path, smi_output, extra, train_extra):
    if smi_output is not None:
        smi = tmp_path / "nvidia-smi"
        smi.write_text(f"#!/bin/sh\necho '{smi_output}'\n")
        smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}/usr/bin{os.pathsep}/bin"}
    for args, said in [([], extra), (["--train"], train_extra)]:
        proc = waiting.run([sys.executable, str(ROOT / "scripts" / "cuda_extra.py"), *args], env=env, timeout=60)
        assert proc.returncode == 0 and proc.stdout == said, args


def test_make_train_installs_what_training_uses_and_make_test_the_test_extra(tmp_path):
    """A new user's first command, `make train`, installed the test extra (scikit-learn, MPI, MKL, BLIS, NVRTC,
    hypothesis...): a 2.0 GB venv on a laptop without a GPU. It installs gpunn[cpu,plot,data] and the CuPy extra
    of the driver now; `make test` (CI) and `make bench` the test extra as before, and a venv that has it trains
    without another pip run. Read from make's dry run (-n), which prints the commands without running them."""
    import shutil

    if shutil.which("make") is None:
        pytest.skip("no make on the PATH")

    def dry_run(target, venv):
        proc = waiting.run(["make", "-n", "-C", str(ROOT), target, f"VENV={venv}", "PYTHON=python3"], timeout=60)
        assert proc.returncode == 0, proc.stderr
        return [line for line in proc.stdout.splitlines() if "pip install" in line and " -e " in line]

    fresh = tmp_path / "venv"
    assert dry_run("train", fresh) == [
        f'{fresh}/bin/python -m pip install --quiet -e ".[cpu,plot,data$(python3 scripts/cuda_extra.py --train)]"']
    for target in ("test", "bench"):
        assert dry_run(target, fresh) == [
            f'{fresh}/bin/python -m pip install --quiet -e ".[test$(python3 scripts/cuda_extra.py)]"'], target
    (fresh / "bin").mkdir(parents=True)
    (fresh / "bin" / "python").touch()
    (fresh / ".installed-stamp").touch()  # make test filled it, after pyproject.toml
    assert dry_run("train", fresh) == []


def test_extras_bring_a_toolkit_and_keep_cuda_13_nvrtc_out_of_cuda12():
    """CuPy 14 wheels need [ctk] (NVRTC, cuRAND...) to compile anything; the test extra pins no CUDA major."""
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "cupy-cuda12x[ctk]>=14" in extras["cuda12"] and "cupy-cuda13x[ctk]>=14" in extras["cuda13"]
    assert not [d for d in extras["cuda12"] + extras["cuda13"] if d.startswith("cupy") and "[ctk]" not in d]
    assert not [d for d in extras["test"] if "nvrtc" in d or "cuda-bindings" in d]
    assert any(d.startswith("nvidia-cuda-nvrtc>=13") for d in extras["nvrtc"])


def test_readmes_set_up_names_every_extra_pyproject_defines():
    """The set-up's list of extras left out mpi, which the data-parallel section's first command installs."""
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    readme = (ROOT / "README.md").read_text()
    set_up = readme[readme.index("**By hand**, from a checkout"):readme.index("## Synthetic data")]
    assert [name for name in extras if f"`{name}`" not in set_up and f'".[{name}]"' not in set_up] == []


def test_the_changelog_has_a_section_for_this_version_and_readme_links_it():
    """Release notes for the version pyproject.toml builds, under Keep a Changelog's heading, so that a
    version bump without its notes fails here."""
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" in project["dynamic"] and "version" not in project  # one copy, in gpunn/_version.py
    from gpunn._version import __version__ as version
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(version)}\] - (Unreleased|\d{{4}}-\d\d-\d\d)$", changelog, re.M), version
    assert "### Behaviour changes" in changelog.split(f"## [{version}]", 1)[1].split("\n## [", 1)[0]
    assert "](CHANGELOG.md)" in (ROOT / "README.md").read_text()


def test_every_environment_variable_readme_names_is_read_somewhere():
    """README's GPUNN_* variables are each named in gpunn/, bench/, tests/, .ci/ or the Makefile: one renamed
    in the code (or spelled otherwise in README) leaves a setting that does nothing."""
    import re

    names = set(re.findall(r"GPUNN_[A-Z0-9_]*[A-Z0-9]", (ROOT / "README.md").read_text()))
    sources = [p for d in ("gpunn", "bench", "tests", ".ci") for p in (ROOT / d).rglob("*")
               if p.is_file() and p.suffix in (".py", ".sh", "") and "fakecupy" not in p.parts]
    text = "\n".join(p.read_text(errors="replace") for p in sources) + (ROOT / "Makefile").read_text()
    unread = names - set(re.findall(r"GPUNN_[A-Z0-9_]*[A-Z0-9]", text))
    assert names and not unread, f"README names {sorted(unread)}, which nothing reads"


def test_readme_gives_the_gpu_check_dry_run_as_ci_runs_it():
    """README's dry run of bench/gpu_check.sh is .ci/run's (its environment and interpreter): without
    PYTHON=.venv/bin/python the stages ran python3, which lacks the test extra, and the run failed."""
    import re

    readme = re.search(r"`(GPUNN_CHECK_DEVICE=cpu [^`]*?bash bench/gpu_check\.sh) [^`]*` is a dry run",
                       (ROOT / "README.md").read_text())
    assert readme and readme.group(1) in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("doc, least", [("README.md", 40), ("kernels/README.md", 5)])
def test_every_file_readme_names_in_the_repository_exists(doc, least):
    """README points at files (`bench/dist_bench.py`, `tests/test_ensemble_gpu.py`, `kernels/*.cu`,
    `scripts/cuda_extra.py`...): each path under gpunn/, bench/, tests/, kernels/, scripts/ or .ci/ matches a file or
    folder, so a file renamed or removed leaves no pointer behind. A path with a placeholder in capitals
    (`bench/gpu_checks/NAME.py`) is a pattern, not a file. kernels/README.md too: it still sent readers to
    gpunn/kernels.py and gpunn/cupy_ops.py, which became gpunn/ops/kernels.py and gpunn/ops/cuda.py."""
    import re
    import tomllib

    paths = set(re.findall(r"(?<![\w/.$-])((?:gpunn|bench|tests|kernels|scripts|\.ci)/[\w./*-]*[\w*/])",
                           (ROOT / doc).read_text()))
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    in_wheel = set(wheel["force-include"].values())  # gpunn/kernels/: where a wheel carries kernels/
    files = {p for p in paths
             if not re.search(r"[A-Z]{3,}", p.replace("RESULTS.md", "")) and p.rstrip("/") not in in_wheel}
    missing = sorted(p for p in files if not list(ROOT.glob(p.rstrip("/"))))
    assert len(files) >= least and not missing, f"{doc} names {missing}, which the repository does not have"


def test_kernels_readme_has_a_row_for_each_source_and_names_each_kernel():
    """kernels/README.md's table says what each file of kernels/ holds (block_sum.cuh had no row) and names every
    kernel gpunn.ops.kernels instantiates (bias_grad_finish, the bias gradient's second launch, was not named)."""
    import re

    from gpunn.ops import kernels

    text = (ROOT / "kernels" / "README.md").read_text()
    rows = "\n".join(line.split("|")[1] for line in text.splitlines() if line.startswith("| `"))
    sources = {p.name for p in (ROOT / "kernels").iterdir() if p.suffix in (".cu", ".cuh")}
    assert set(re.findall(r"`([\w.]+)`", rows)) == sources
    names = {e.split("::")[1].split("<")[0] for exprs in kernels.all_name_expressions().values() for e in exprs}
    assert names and not {n for n in names if f"`{n}<" not in text}, sorted(n for n in names if f"`{n}<" not in text)

@pytest.mark.parametrize("doc, least", [("README.md", 10), ("CHANGELOG.md", 10), ("kernels/README.md", 2)])
def test_every_dotted_gpunn_name_the_docs_give_exists(doc, least):
    """Each ``gpunn.x.y`` README or CHANGELOG names (a module, class, function or constant:
    gpunn.data.is_source, gpunn.distributed.ShardedSource, gpunn.training.loop.train...) is importable or an
    attribute, so a rename in the code cannot leave the docs naming what is gone."""
    import importlib
    import re

    def resolves(name):
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
                break
            except ImportError:
                continue
        for part in parts[i:]:
            if not hasattr(obj, part):
                try:
                    obj = importlib.import_module(f"{obj.__name__}.{part}")
                    continue
                except (ImportError, AttributeError):
                    return False
            obj = getattr(obj, part)
        return True

    names = set(re.findall(r"(?<![\w/.])gpunn(?:\.[A-Za-z_]\w*)+", (ROOT / doc).read_text()))
    missing = sorted(n for n in names if not resolves(n))
    assert len(names) >= least and not missing, f"{doc} names {missing}, which gpunn does not have"



def test_every_signature_readme_writes_out_is_the_codes():
    """README writes some signatures out in full (`MLP(layer_sizes, activation="relu", ...)`, `model.fit(X, Y, *,
    epochs, ...)`, `gpunn.SGD(lr, momentum=0, ...)`): each names the code's parameters in its order, none left
    out, with the code's defaults and its keyword-only marker `*` (without it a reader calls fit(X, Y, 10, 256)), so a parameter added, renamed or given another default leaves no README
    signature behind. A signature is a code span `callable(...)` of three or more parameters, each a name or
    name=literal, of a gpunn callable (`model.` an MLP's method, `ens.` an Ensemble's); calls with values
    (`gpunn.Schedule("step", step_size=5)`, `fit(..., graph=True)`) are examples, not signatures."""
    import ast
    import inspect
    import re

    import gpunn

    def resolve(dotted):
        head, *rest = dotted.split(".")
        obj = {"gpunn": gpunn, "model": gpunn.MLP, "ens": gpunn.Ensemble}.get(head) or getattr(gpunn, head, None)
        for part in rest:
            obj = getattr(obj, part, None)
        return obj

    def parameter(text):  # (name, default or inspect's empty), or None for anything else: an example's value
        name, eq, value = (t.strip() for t in text.partition("="))
        if name == "*" and not eq:  # the keyword-only marker, where the code has one
            return name, inspect.Parameter.empty
        if not name.isidentifier():
            return None
        try:
            return name, ast.literal_eval(value) if eq else inspect.Parameter.empty
        except (ValueError, SyntaxError):
            return None

    checked = []
    text = " ".join((ROOT / "README.md").read_text().split())
    for name, args in re.findall(r"`([A-Za-z_][\w.]*)\(([^`()]*)\)`", text):
        written = [parameter(a) for a in args.split(",")]
        target = resolve(name)
        if len(written) < 3 or None in written or target is None:
            continue
        code = []
        for p in inspect.signature(target).parameters.values():
            if p.kind is p.KEYWORD_ONLY and ("*", p.empty) not in code:
                code.append(("*", p.empty))  # fit(X, Y, epochs, ...) read as positional: fit(X, Y, 10) is a TypeError
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                code.append((p.name, p.default))
        assert [n for n, _ in written] == [n for n, _ in code], f"README's {name}({args}) is not the code's {code}"
        defaults = dict(code)
        wrong = [(n, d, defaults[n]) for n, d in written if d is not inspect.Parameter.empty and d != defaults[n]]
        assert not wrong, f"README's {name}({args}) gives other defaults (README, code): {wrong}"
        checked.append(name)
    assert {"MLP", "model.fit", "gpunn.SGD", "gpunn.Adam", "gpunn.datasets.make"} <= set(checked), checked


# The warnings a README section's examples give, as README says: its grid search's 7 fits (3 folds x 2 rates, and the
# refit), each of max_iter=30 epochs, warn as scikit-learn's MLPRegressor's do. make test printed them, unasserted.
README_WARNS = {"## Training runs you can trust": ["ConvergenceWarning"] * 7}


@pytest.mark.parametrize("section, lines", [
    ("## Use", 2),
    pytest.param("## Training runs you can trust", 3, marks=pytest.mark.slow),
    pytest.param("## Many models at once: ensembles and sweeps", 0, marks=pytest.mark.slow),
    ("## Several processes: data parallel over MPI and NCCL", 1),
    ("## Data beyond memory", 0)])
def test_readmes_examples_run_and_print_what_readme_says_they_print(tmp_path, monkeypatch, capsys, section, lines):
    """README's examples, run as README gives them, print the lines README's comments say ("Use": `20 epochs, last
    loss 3.49`, `(200, 1) R² 0.84`; "Training runs you can trust": `61 epochs, best 53, stopped early: True`, `test
    R² 0.9565`, and the scikit-learn grid search's best setting and test R²; "Several processes": script.py run alone, `R²
    0.756`; the ensemble and data sources' examples print nothing): an API change that breaks an example, or a change of results that leaves README's numbers
    behind, fails here. A section's Python blocks run in turn in one
    namespace (the data sources' first makes the files its second reads: copied verbatim, it ran). CPU (device
    "auto" through GPUNN_DEVICE, as a reader without a GPU runs them), float32, fixed seeds: the same numbers on
    every run (also with OpenBLAS's own kernel choice and with GPUNN_FUSED_KERNELS=0, checked by hand)."""
    text = (ROOT / "README.md").read_text()
    body = text.split(section + "\n", 1)[1].split("\n## ", 1)[0]
    blocks = [block.split("```", 1)[0] for block in body.split("```python")[1:]]
    if section == "## Data beyond memory":
        pytest.importorskip("pyarrow")  # its Parquet and CSV sources: gpunn[data], as README says
    said = [line[2:] for block in blocks for line in block.splitlines() if line.startswith("# ")]
    monkeypatch.chdir(tmp_path)  # ModelCheckpoint("run.npz"), the data sources' files
    monkeypatch.setenv("GPUNN_DEVICE", "cpu")
    namespace = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        for block in blocks:
            exec(compile(block, "README.md", "exec"), namespace)
    said_warnings = [w for w in caught if issubclass(w.category, UserWarning)]  # (not a library's deprecations)
    assert [w.category.__name__ for w in said_warnings] == README_WARNS.get(section, []), \
        [str(w.message) for w in said_warnings]
    printed = capsys.readouterr().out.splitlines()
    # (a data-parallel fit's own first line names the MPI library installed, which README cannot give)
    assert [line for line in printed if not line.startswith("data parallel: ")] == said and len(said) == lines and blocks


def test_readmes_command_line_data_examples_run_on_the_files_its_setup_block_makes(tmp_path, monkeypatch, capsys):
    """"Data beyond memory"'s `gpunn train --data` and `gpunn predict` lines name the files its first Python block
    makes, and each runs on them as written, its optional `[...]` part given too (one epoch of a small net here, for
    time), in the directory where a reader ran the section's Python blocks before them: README's `--data
    runs.parquet` named a file the block never wrote (it writes a directory `runs/`), and its tables held too few
    rows for train's held-out tenth. The second block's `ModelCheckpoint("run.npz")` left the checkpoint that the
    first line's `--save run.npz` then refused to replace, and the `cat runs/a.parquet | gpunn predict runs.npz -
    out.csv` line (gpunn's part fed the file on standard input here) was refused: `out.csv`, the line before's
    predictions, holds one column, as many as runs.npz's inputs."""
    import io
    import shlex

    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from gpunn import cli

    body = (ROOT / "README.md").read_text().split("## Data beyond memory\n", 1)[1].split("\n## ", 1)[0]
    blocks = [block.split("```", 1)[0] for block in body.split("```python")[1:]]
    commands = body.split("From the command line:\n\n```sh\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GPUNN_DEVICE", "cpu")
    namespace = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    ran = []
    for line in commands.splitlines():
        args = shlex.split(line.replace("[", "").replace("]", ""), comments=True)
        if args[:1] == ["cat"] and args[2:4] == ["|", "gpunn"]:  # (standard input from the file cat gives)
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO((tmp_path / args[1]).read_bytes())))
            args = args[3:]
        args = args[:args.index("|")] if "|" in args else args  # (gpunn's part of a pipe: OUT - writes to it)
        if args[:3] == ["gpunn", "train", "--data"]:
            args += ["--epochs", "1", "--hidden", "4", "--quiet"]
        elif args[:2] != ["gpunn", "predict"]:
            continue
        assert cli.main(args[1:]) == 0, (line, capsys.readouterr())
        ran.append(args[1])
    assert ran == ["train"] * 5 + ["predict"] * 5 and (tmp_path / "out.csv").exists()
    assert pq.read_table(tmp_path / "p.parquet").column_names == ["x", "y1", "y2"]  # --keep x
    assert capsys.readouterr().out.splitlines()[-1].startswith("held-out (runs/, against y1, y2): mse ")  # --score


def _markdown_sections(text):
    """{GitHub's anchor: the heading's section, down to the next heading of its level or above}; headings in
    fenced code are text. The anchor is github-slugger's: lower case, every character but letters, marks,
    digits, connector punctuation, spaces and hyphens dropped, spaces made hyphens, repeats numbered -1, -2."""
    import re
    import unicodedata

    lines, headings, fenced = text.splitlines(), [], False
    for i, line in enumerate(lines):
        fenced ^= line.startswith("```")
        heading = None if fenced else re.match(r"(#{1,6}) (.*)", line)
        if heading:
            headings.append((i, len(heading.group(1)), heading.group(2)))
    sections, seen = {}, {}
    for k, (i, level, title) in enumerate(headings):
        anchor = "".join(c for c in title.strip().lower()
                         if c in " -" or unicodedata.category(c)[0] in "LMN" or unicodedata.category(c) == "Pc")
        anchor = anchor.replace(" ", "-")
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        end = next((j for j, deeper, _ in headings[k + 1:] if deeper <= level), len(lines))
        sections[anchor + (f"-{count}" if count else "")] = "\n".join(lines[i:end])
    return sections


def test_results_target_table_cites_sections_that_hold_its_figures():
    """bench/RESULTS.md opens with "Where each target stands": each row's latest measurement is copied from the
    sections its row links to. A link to a heading renamed, or a figure that no linked section gives (a number
    typed wrong, or one measured for the table instead of recorded in a section), fails here. The figures are
    the numbers of the measurement column (not those inside a word: float64, H2D)."""
    import re

    text = (ROOT / "bench" / "RESULTS.md").read_text()
    sections = _markdown_sections(text)
    table = sections["where-each-target-stands"]
    links = dict(re.findall(r"^\[([\w-]+)\]: #(\S+)$", table, re.M))
    assert links and not set(links.values()) - set(sections), sorted(set(links.values()) - set(sections))
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| target |")]
    assert len(rows) >= 25
    cited_rows = 0
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split(" | ")]
        labels = re.findall(r"\]\[([\w-]+)\]", row)
        assert len(cells) == 4 and all(label in links for label in labels), row
        if not labels:
            continue  # measured by the test suite in CI, not in a section
        cited = "\n".join(sections[links[label]] for label in labels).replace("**", "")
        figures = re.findall(r"(?<![\w.^])\d+(?:,\d{3})*(?:\.\d+)?(?:e-\d+)?", cells[1])
        missing = [figure for figure in figures if not re.search(rf"(?<![\d.]){re.escape(figure)}(?![\d])", cited)]
        assert not missing, f"{missing} of {cells[1]!r} are in none of the sections {labels}"
        cited_rows += 1
    assert cited_rows >= 20


def _readme_says(words):
    """The number README writes where `words` (a regex with one group) matches, spaces normalised."""
    import re

    found = re.findall(words, " ".join((ROOT / "README.md").read_text().split()))
    assert len(found) == 1, f"README says {words!r} {len(found)} times"
    return float(found[0].replace(",", ""))


def _gpu_check_budget():
    import re

    return float(re.search(r"^BUDGET=\$\{GPUNN_CHECK_BUDGET:-(\d+)\}$", (ROOT / "bench" / "gpu_check.sh").read_text(),
                           re.M).group(1))


def _pytest_timeout_minutes():
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["timeout"] / 60


def _window_default():
    import inspect

    from gpunn.data import base, sources, tables
    defaults = {inspect.signature(source).parameters["window"].default
                for source in (base.ChunkedSource, sources.SyntheticSource, sources.NpySource, tables.ParquetSource,
                               tables.CsvSource)}
    assert len(defaults) == 1, defaults
    return defaults.pop()


@pytest.mark.parametrize("words, code", [
    (r"more than ([\d,]+) times the run's first batch loss", lambda: __import__("gpunn.training.loop").training.loop
     .DIVERGENCE_FACTOR),
    (r"`GPUNN_DIST_TIMEOUT` seconds \(default (\d+);", lambda: __import__("gpunn.distributed.comm").distributed.comm
     .DEFAULT_TIMEOUT_S),
    (r"at least (\d+) MFLOP of work \(`MIN_GROUP_FLOPS`", lambda: __import__("gpunn.ops.ensemble").ops.ensemble
     .MIN_GROUP_FLOPS / 1e6),
    (r"(\d+) MFLOP is enough \(`MIN_GROUP_FLOPS_ONE_CALL`", lambda: __import__("gpunn.ops.ensemble").ops.ensemble
     .MIN_GROUP_FLOPS_ONE_CALL / 1e6),
    (r"another library must beat NumPy by (\d+)%", lambda: round((__import__("gpunn.ops.gemm").ops.gemm.MARGIN - 1) * 100)),
    (r"it costs a (\d+) MiB cuBLAS workspace", lambda: __import__("gpunn.ops.cublas").ops.cublas.WORKSPACE_BYTES / 2**20),
    (r"a `.npy` or CSV input is over (\d+) MiB", lambda: __import__("gpunn.cli.predict").cli.predict.STREAM_BYTES / 2**20),
    (r"`window` chunks \((\d+) by default;", _window_default),
    (r"within a (\d+) s budget that every stage shares", _gpu_check_budget),
    (r"A test still running after (\d+) minutes", _pytest_timeout_minutes),
    (r"one ([\d,]+)-row chunk in memory at a time", lambda: __import__("gpunn.datasets").datasets.CHUNK_ROWS),
    (r"where pieces of ([\d,]+) rows cannot", lambda: __import__("gpunn.data.sources").data.sources.SMALLEST_PIECE),
    (r"cut by default into about (\d+) smaller chunks", lambda: __import__("gpunn.data.base").data.base.SPLIT_CHUNKS),
    (r"into blocks \((\d+) MiB by default",
     lambda: __import__("gpunn.data.tables").data.tables.CsvSource.BLOCK / 2**20),
    (r"or (\d+) MiB of CSV\)", lambda: __import__("gpunn.data.base").data.base.SPLIT_CHUNKS
     * __import__("gpunn.data.tables").data.tables.CsvSource.BLOCK / 2**20),
    (r"counted when it is built for ([\d,]+) rows a member", lambda: __import__("gpunn.ensemble").ensemble.Ensemble
     .chunk_rows),
    (r"leaky_relu \(slope ([\d.]+)\)", lambda: __import__("gpunn.activations").activations.LEAKY_SLOPE),
])
def test_readme_quotes_the_codes_own_constants(words, code):
    """Numbers README gives for a setting in the code (divergence at 10,000 times the first loss, the collective
    timeout, the member-group thresholds, the GEMM chooser's margin, the graph's cuBLAS workspace, predict's
    streaming size, the stream window, gpu_check.sh's budget, the test time limit; a task's chunk, a stream's
    smallest piece, a small file's chunks and a CSV block, the rows an Ensemble's memory check counts, leaky_relu's
    slope) are the code's: a constant changed in the code, or a number typed otherwise in README, fails here."""
    assert _readme_says(words) == code()


def test_each_data_source_makers_help_names_every_option_its_source_takes():
    """help(gpunn.data.csv) showed csv(path, target=None, features=None, **options) and "see CsvSource": what the
    options are (delimiter, validation_fraction, standardize...) was in a class a notebook's help does not show.
    Each maker's docstring names every keyword its source's class takes, so one added there is named here too."""
    import inspect

    from gpunn import data
    from gpunn.data import tables

    for maker, cls in ((data.synthetic, data.SyntheticSource), (data.npy, data.NpySource),
                       (data.parquet, tables.ParquetSource), (data.csv, tables.CsvSource)):
        names = [name for name, p in inspect.signature(cls).parameters.items() if p.kind != p.VAR_KEYWORD]
        unnamed = [name for name in names if f"``{name}``" not in maker.__doc__]
        assert not unnamed, f"{maker.__name__}'s docstring does not name {unnamed}"
