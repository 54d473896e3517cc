"""The package's import graph has no cycle.

Every module under gpunn/ is parsed (not imported) and each ``import``/``from ... import`` anywhere in it
counts, including those inside functions (an import deferred to call time still ties two modules into a
knot: it only hides the cycle from the interpreter). Relative imports are resolved against the importing
module's package; ``from package import name`` is an edge to the submodule ``package.name`` when that is a
module, else to the package itself. A package's own ``__init__`` is not an implicit dependency of its
submodules (Python runs it first, but it is not code they call into).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import waiting

import gpunn

PACKAGE = Path(__file__).resolve().parents[1] / "gpunn"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The gpunn modules that ``name`` (at ``path``) imports, anywhere in its body."""
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rpartition(".")[0]  # the package relative imports start from
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = here.split(".")
                base_parts = base_parts[:len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            # `import gpunn.ops.cpu` names a module; `from gpunn.x import y` may name an attribute of x
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (iterative depth-first search, deterministic order)."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    for root in sorted(graph):
        if colour[root] != WHITE:
            continue
        stack = [(root, iter(sorted(graph[root])))]
        path = [root]
        colour[root] = GREY
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = BLACK
                stack.pop()
                path.pop()
            elif colour[child] == GREY:
                return path[path.index(child):] + [child]
            elif colour[child] == WHITE:
                colour[child] = GREY
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
    return None


def test_the_graph_sees_the_package():
    graph = import_graph()
    # a sample of real edges, so that a parser that saw nothing could not pass the cycle test
    assert "gpunn.ops.base" in graph["gpunn.ops.cpu"]  # from .base import Ops
    assert "gpunn.ops.cpu" in graph["gpunn.ops"]  # inside ops_for
    assert "gpunn.training.fit" in graph["gpunn.model"]  # inside MLP.fit
    assert "gpunn.training.loop" in graph["gpunn.checkpoint.resume"]  # from ..training.loop import train
    assert len(graph) >= 30


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b"}, "b": {"b2", "c"}, "b2": set(), "c": {"b"}}, ["b", "c", "b"]),
])
def test_find_cycle(graph, expected):
    assert find_cycle(graph) == expected


def test_function_level_and_relative_imports_count(tmp_path):
    pkg = tmp_path / "gpunn"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .leaf import x\n")
    (pkg / "sub" / "leaf.py").write_text("def f():\n    from ..top import y\n")
    (pkg / "top.py").write_text("from gpunn.sub import leaf\nimport gpunn.sub\n")
    known = {"gpunn", "gpunn.sub", "gpunn.sub.leaf", "gpunn.top"}
    assert imports_of("gpunn.sub.leaf", pkg / "sub" / "leaf.py", known) == {"gpunn.top"}
    assert imports_of("gpunn.sub", pkg / "sub" / "__init__.py", known) == {"gpunn.sub.leaf"}
    assert imports_of("gpunn.top", pkg / "top.py", known) == {"gpunn.sub.leaf", "gpunn.sub"}


def reachable(graph, start):
    seen, todo = set(), [start]
    while todo:
        for child in graph[todo.pop()]:
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def test_the_training_engine_does_not_depend_on_checkpoints_or_the_cli():
    # a package's modules too: gpunn.checkpoint became a package (its modules gpunn.checkpoint.format, ...)
    above = ("gpunn.checkpoint", "gpunn.cli", "gpunn.bench", "gpunn.estimator")
    graph = import_graph()
    for name in graph:
        if name.startswith("gpunn.training"):
            below = reachable(graph, name)
            assert not [m for m in below if m in above or m.startswith(tuple(f"{a}." for a in above))], name


def test_atomic_writes_and_the_data_files_do_not_depend_on_checkpoints_or_training():
    # atomic_write lived in gpunn.checkpoint: gpunn.config, the data files' caches and the reports that write through
    # it depended on the checkpoint package, and through it on the training code it loads (gpunn.checkpoint.format)
    above = ("gpunn.checkpoint", "gpunn.training", "gpunn.cli")
    graph = import_graph()
    for name in ("gpunn.atomic", "gpunn.config", "gpunn.data.files"):
        assert not [m for m in reachable(graph, name) if m.startswith(above)], name


def test_dir_of_gpunn_lists_every_public_name_the_lazy_ones_too():
    # dir(), which IPython's tab completion reads, missed MLPRegressor and distributed (imported on first use)
    names = dir(gpunn)
    assert set(gpunn.__all__) <= set(names) and {"data", "distributed"} <= set(names)
    assert all(hasattr(gpunn, name) for name in names)  # and each name listed is there (__getattr__'s table is __dir__'s)


def test_each_public_module_says_what_it_exports():
    # gpunn.datasets had no __all__: "from gpunn.datasets import *" also brought numpy, math, inspect, DeviceRNG,
    # host_rng, canonical_dtype, is_real, positive_int and seed_int into the caller's namespace
    import importlib
    import types

    for name in ("gpunn", "gpunn.datasets", "gpunn.data", "gpunn.ops", "gpunn.distributed", "gpunn.bench"):
        module = importlib.import_module(name)
        assert hasattr(module, "__all__"), name
        star = {}
        exec(f"from {name} import *", star)
        assert set(star) - {"__builtins__"} == set(module.__all__), name
        assert not any(isinstance(star[n], types.ModuleType) and not star[n].__name__.startswith(name)
                       for n in module.__all__), name
    assert {"make", "stream", "get_task", "TASKS", "CHUNK_ROWS"} <= set(gpunn.datasets.__all__)


def test_import_gpunn_leaves_the_lazy_names_unloaded():
    # gpunn._LAZY: the data sources, data parallel and the scikit-learn estimator load on first use, so that
    # `import gpunn` stays fast; ensemble.py's top-level import of gpunn.data.stats (c0e2623) loaded the data
    # sources into every process (~6 ms)
    import os
    import sys

    lazy = ["gpunn.data", "gpunn.distributed", "gpunn.estimator", "gpunn.bench", "gpunn.cli", "sklearn"]
    code = (f"import sys, gpunn; lazy = {lazy!r}; "
            "print(sorted(m for m in sys.modules if any(m == n or m.startswith(n + '.') for n in lazy)))")
    proc = waiting.run([sys.executable, "-c", code], timeout=120,
                       env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_readme_design_table_names_every_module():
    """README's Design table says what each module holds: a module added without its line there (ops/cblas.py
    and data/errors.py were) is named here. A module of a package is named in its package's row (by file name
    or stem: the bench and cli rows list theirs as `configs`, `train`...) or as PACKAGE/FILE in another row."""
    import re

    table = (PACKAGE.parent / "README.md").read_text().split("## Design", 1)[1].lstrip().split("\n\n", 1)[0]
    rows = [line.split("|")[1:3] for line in table.splitlines()[2:]]
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name in ("__init__.py", "__main__.py", "_version.py"):
            continue
        package = path.parent.relative_to(PACKAGE).as_posix()
        if package == ".":
            named = any(f"gpunn/{path.name}" in head for head, _ in rows)
        else:
            named = any(f"gpunn/{package}/" in head and re.search(rf"(?<![\w/]){re.escape(path.stem)}\b", text)
                        for head, text in rows) or any(f"{package}/{path.name}" in text for _, text in rows)
        if not named:
            missing.append(path.relative_to(PACKAGE).as_posix())
    assert not missing, f"README's Design table does not name {missing}"


def test_locks_a_forked_child_renews_are_renewed_in_one_place():
    """A forked child renews gpunn's locks through gpunn.forksafe (one hook for all), drops its inherited thread
    pools in gpunn.ops.cpu, and ends the other threads' holds of the BLAS count in gpunn.ops.fit_threads (state of
    its own, no lock): no other module registers an at-fork hook. Three modules had each their own copy of "a new
    lock in the child" (ops/gemm, ops/ensemble, ops/cblas, 8509c79)."""
    hooks = set()
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr == "register_at_fork":
                hooks.add(name)
    assert hooks == {"gpunn.forksafe", "gpunn.ops.cpu", "gpunn.ops.fit_threads"}


# every name a module defined before it was split into modules of one job (which it imports them from): code that
# imported one from it still does
SPLIT_MODULES = {
    "gpunn.training.callbacks": (
        ["callback_protocol", "history", "progress", "numba_watch", "monitoring"],
        ["CALLBACKS", "Callback", "DAY", "EarlyStopping", "HOOK_ARGUMENTS", "History", "PassProgress", "ProgressBar",
         "ReduceLROnPlateau", "YEAR", "_BAR_FORMAT", "_KERAS_BATCH_HOOKS", "_MODEL_ATTRIBUTES", "_Monitoring",
         "_NUMBA_EVENTS", "_NumbaWatch", "_STATE_ARGUMENTS", "_an_optimizer", "_readable_times", "_text_kept_up",
         "check_logged", "checked_monitor", "checked_monitoring", "default_monitor", "draws_bar", "four_digits",
         "improves", "interval_text", "lines_for", "may_add_logs", "missing_log_hint", "missing_monitor",
         "monitor_mode", "numba_seconds", "order_callbacks", "refuse_foreign_hooks", "writes_checkpoints"]),
    "gpunn.data.tables": (
        ["table_columns", "parquet_tables", "csv_tables"],
        ["CACHE_ENV", "CsvSource", "MissingColumns", "NoTarget", "ParquetSource", "QUOTED_MOST", "_EmptySlice",
         "_QUOTE_OR_LINE_END", "_RowGroupCursor", "_as_stored", "_by_default", "_float64_values", "_held_instead",
         "_last_row_end", "_line_end", "_misspelt", "_names", "_other_case", "_pandas_index_columns", "_row_end",
         "_spaced", "_unnamed_column", "_validity", "_with_comma", "cache_directory", "check_csv_kind",
         "close_column", "columns_are", "copy_columns", "csv_column_types", "csv_schema", "first_refused",
         "leave_out_hint", "listed_columns", "open_parquet", "parquet_cell", "parse_rows", "pick_columns",
         "pick_in_every_file", "pyarrow_module", "read_range", "refused_in_first_block", "refused_rows",
         "row_range_buffers", "row_ranges"]),
}


@pytest.mark.parametrize("name", sorted(SPLIT_MODULES))
def test_every_name_of_a_module_before_its_split_still_imports_from_it(name):
    """Each name is defined in one of the modules it was split into (or still in it), and is that object there."""
    import importlib

    module = importlib.import_module(name)
    parts, names = SPLIT_MODULES[name]
    homes = [module] + [importlib.import_module(f"{name.rpartition('.')[0]}.{part}") for part in parts]
    for each in names:
        defined = [home for home in homes if each in vars(home) and not _imported_into(home, each)]
        assert len(defined) == 1 and getattr(module, each) is getattr(defined[0], each), each
    public = ("Callback", "History", "EarlyStopping", "ReduceLROnPlateau")  # gpunn's own re-exports too
    assert {each: getattr(gpunn, each) for each in public} == {each: getattr(gpunn.training.callbacks, each)
                                                               for each in public}


def _imported_into(module, name) -> bool:
    """Whether ``module`` binds ``name`` by an import rather than defining it."""
    tree = ast.parse(Path(module.__file__).read_text())
    return any(isinstance(node, ast.ImportFrom) and any((alias.asname or alias.name) == name for alias in node.names)
               for node in tree.body)


def test_a_callback_pickled_before_the_split_of_the_callbacks_module_loads():
    """A pickle names a class by its module and qualified name: one of a callback pickled before the callbacks module
    was split names gpunn.training.callbacks, which still holds every class it held."""
    import pickle

    stopper = gpunn.EarlyStopping(monitor="loss", patience=3)
    stopper.best, stopper.wait = 0.25, 2
    before = pickle.dumps(stopper, protocol=2).replace(b"gpunn.training.monitoring", b"gpunn.training.callbacks")
    assert b"gpunn.training.callbacks\nEarlyStopping" in before
    loaded = pickle.loads(before)
    assert type(loaded) is gpunn.EarlyStopping and loaded.get_config() == stopper.get_config()
    assert (loaded.best, loaded.wait) == (0.25, 2)
    for name in ("History", "ProgressBar", "ReduceLROnPlateau", "Callback"):
        assert pickle.loads(f"cgpunn.training.callbacks\n{name}\n.".encode()) is getattr(gpunn.training.callbacks, name)
