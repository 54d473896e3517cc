"""gpunn.preflight: the memory estimate against what the host or the GPU has free."""
import collections
import fractions
import os
import types

import numpy
import pytest

import gpunn
from gpunn import preflight


def fake_gpu(free_bytes, pooled=0):
    runtime = types.SimpleNamespace(memGetInfo=lambda: (free_bytes, 80 << 30))
    pool = types.SimpleNamespace(free_bytes=lambda: pooled)
    xp = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime), get_default_memory_pool=lambda: pool)

    class Null:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    return types.SimpleNamespace(is_gpu=True, device="cuda:0", xp=xp, use=Null)


def test_the_gpu_estimate_counts_driver_free_and_pooled_memory_and_says_what_fits():
    need = preflight.train_memory(10_000_000, 64, 1, 4, [64, 256, 256, 1], 256)
    assert need["data"] == 10_000_000 * 65 * 4 + 10_000_000 * 64
    # the shuffled copy of the training rows (9 in 10), and parameters, gradients, Adam's two moments and three
    # workspaces of a batch per layer (mut12m's P3 and P4: the held-out tenth or the biases not counted passed)
    assert need["shuffle"] == 9_000_000 * 65 * 4
    n_params = (64 + 1) * 256 + (256 + 1) * 256 + (256 + 1) * 1
    assert need["model"] == 4 * n_params * 4 + 3 * 256 * (256 + 256 + 1) * 4
    # --standardize trains on a standardized copy of the rows (mut12m's P1: the copy not counted passed)
    scaled = preflight.train_memory(10_000_000, 64, 1, 4, [64, 256, 256, 1], 256, standardize=True)
    assert scaled["data"] - need["data"] == 10_000_000 * 65 * 4
    preflight.check_train_memory(need, 10_000_000, fake_gpu(8 << 30))  # 2.4 + 2.1 GiB fit in 8 GiB
    graph = preflight.train_memory(10_000_000, 64, 1, 4, [64, 256, 256, 1], 256, graph=True)
    assert graph["model"] - need["model"] == 2 * 256 * 65 * 4 + (32 << 20)  # two batch shapes' buffers, cuBLAS's
    gpu = fake_gpu(1 << 30, pooled=64 << 20)
    with pytest.raises(preflight.PreflightError,
                       match=r"of GPU cuda:0 memory .* but 1.1 GiB is available; about ") as said:
        preflight.check_train_memory(need, 10_000_000, gpu)
    # the rows it says would fit do, with a tenth of the memory to spare (mut12m's P10: the free memory over the
    # bytes per row, without the model and the tenth, named more rows than fit)
    rows = int(str(said.value).split("; about ")[1].split(" rows")[0].replace(",", ""))
    fits = preflight.train_memory(rows, 64, 1, 4, [64, 256, 256, 1], 256)
    assert 0.85 * ((1 << 30) + (64 << 20)) < sum(fits.values()) <= 0.9 * ((1 << 30) + (64 << 20))
    # the model counts too: 2 GiB of it and 2 MiB of rows do not fit in 1 GiB (mut12m's P9: data and copy alone passed)
    with pytest.raises(preflight.PreflightError, match=r"model 2.0 GiB\) but 1.0 GiB is available; about 0 rows"):
        preflight.check_train_memory({"data": 1 << 20, "shuffle": 1 << 20, "model": 2 << 30}, 1000, fake_gpu(1 << 30))


@pytest.mark.parametrize("n_bytes, text", [(3 << 20, "3.0 MiB"), (1023 << 20, "1,023.0 MiB"), (15 << 30, "15.0 GiB"),
                                            (1023 << 30, "1,023.0 GiB"), (1 << 40, "1.0 TiB"),
                                            (2633.8 * 2**30, "2.6 TiB"), (263378 * 2**30, "257.2 TiB"),
                                            (5000 << 40, "5,000.0 TiB")])
def test_a_memory_size_is_given_in_the_unit_that_keeps_it_short(n_bytes, text):
    """gpunn train --rows 1e12 said it streamed since "263378.0 GiB would not fit comfortably in 14.4 GiB free"."""
    assert preflight.size_text(n_bytes) == text


def test_the_host_estimate_uses_memavailable(monkeypatch):
    monkeypatch.setattr(preflight, "host_available_bytes", lambda: 1 << 30)
    host = types.SimpleNamespace(is_gpu=False, device="cpu")
    need = preflight.train_memory(1_000_000, 8, 1, 4, [8, 16, 1], 256)
    preflight.check_train_memory(need, 1_000_000, host)
    need = preflight.train_memory(100_000_000, 8, 1, 4, [8, 16, 1], 256)
    with pytest.raises(preflight.PreflightError, match="of host memory"):
        preflight.check_train_memory(need, 100_000_000, host)


def _cgroup_files(root, files):
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_a_memory_cgroups_room_is_its_least_limit_less_what_it_holds_but_its_inactive_page_cache(tmp_path):
    """MemAvailable is the whole machine's: a job limited to 4 GB on a node of 256 was told 200 GB were free and
    killed mid-run. A v2 group (and the groups above it, to the mount) or a v1 one (memory.stat's hierarchical
    limit: the least above it) leaves limit - usage + inactive files; no limit anywhere is None."""
    GiB, MiB = 2**30, 2**20
    v2 = tmp_path / "v2"
    _cgroup_files(v2, {"job/memory.max": f"{4 * GiB}\n", "job/memory.current": f"{3 * GiB}\n",
                       "job/memory.stat": f"anon 1\ninactive_file {512 * MiB}\nactive_file 7\n",
                       "job/step/memory.max": "max\n", "job/step/memory.current": f"{GiB}\n",
                       "memory.max": f"{64 * GiB}\n", "memory.current": f"{GiB}\n", "in": "0::/job/step\n",
                       "top": "0::/\n", "gone": "0::/job/left\n"})
    assert preflight.cgroup_available_bytes(v2, v2 / "in") == GiB + 512 * MiB  # the job's, above the step's none
    assert preflight.cgroup_available_bytes(v2, v2 / "top") == 63 * GiB  # a container: its group is the mount's root
    assert preflight.cgroup_available_bytes(v2, v2 / "gone") == 63 * GiB  # (a group not mounted here: the root's)
    v1 = tmp_path / "v1"
    job = "memory/slurm/job_7"
    _cgroup_files(v1, {f"{job}/memory.limit_in_bytes": "9223372036854771712\n",
                       f"{job}/memory.usage_in_bytes": f"{GiB}\n",
                       f"{job}/memory.stat": f"cache 5\nhierarchical_memory_limit {2 * GiB}\n"
                                             f"total_inactive_file {100 * MiB}\n",
                       "memory/memory.limit_in_bytes": "9223372036854771712\n", "memory/memory.usage_in_bytes": "5\n",
                       "in": "5:cpuset:/\n4:memory:/slurm/job_7\n0::/\n", "free": "4:cpu,memory:/\n"})
    assert preflight.cgroup_available_bytes(v1, v1 / "in") == GiB + 100 * MiB  # a v1 line before the empty v2 one
    assert preflight.cgroup_available_bytes(v1, v1 / "free") is None  # no limit
    assert preflight.cgroup_available_bytes(v1, tmp_path / "absent") is None  # no /proc (not Linux)
    _cgroup_files(v2, {"job/memory.current": f"{5 * GiB}\n", "job/memory.stat": ""})
    assert preflight.cgroup_available_bytes(v2, v2 / "in") == 0  # over its limit (reclaiming): no room, not less


def test_a_memory_cgroups_room_is_the_least_of_its_groups_up_to_the_mount_and_of_both_hierarchies_listed(tmp_path):
    """A group's room is the least of its own and its parents' (a job's step under a job under a smaller slice), up
    to the mount and not above it (a container's root, whatever lies outside); a hybrid system lists a v2 line and a
    v1 memory line (its controller mounted beside cpu here): the room is the least of the two."""
    GiB, MiB = 2**30, 2**20
    outside, root = tmp_path, tmp_path / "cgroup"
    _cgroup_files(outside, {"memory.max": f"{10 * MiB}\n", "memory.current": "0\n"})  # not the process's: above the mount
    _cgroup_files(root, {"job/memory.max": f"{4 * GiB}\n", "job/memory.current": f"{GiB}\n",
                         "memory.max": f"{2 * GiB}\n", "memory.current": f"{GiB}\n", "v2": "0::/job\n",
                         "memory/job/memory.limit_in_bytes": f"{3 * GiB // 2}\n",
                         "memory/job/memory.usage_in_bytes": f"{GiB}\n",
                         "memory/memory.limit_in_bytes": "9223372036854771712\n",
                         "memory/memory.usage_in_bytes": "5\n", "hybrid": "0::/job\n7:cpu,memory:/job\n"})
    assert preflight.cgroup_available_bytes(root, root / "v2") == GiB  # the parent's, less than the job's 3 GiB
    assert preflight.cgroup_available_bytes(root, root / "hybrid") == 512 * MiB  # the v1 group's, less than v2's


def test_the_host_has_the_least_of_memavailable_and_its_cgroups_room(monkeypatch):
    monkeypatch.setattr(preflight, "_meminfo_available", lambda: 200 << 30)
    monkeypatch.setattr(preflight, "cgroup_available_bytes", lambda: 3 << 30)
    assert preflight.host_available_bytes() == 3 << 30
    monkeypatch.setattr(preflight, "cgroup_available_bytes", lambda: None)
    assert preflight.host_available_bytes() == 200 << 30
    monkeypatch.setattr(preflight, "_meminfo_available", lambda: None)
    assert preflight.host_available_bytes() is None
    monkeypatch.setattr(preflight, "cgroup_available_bytes", lambda: 3 << 30)
    assert preflight.host_available_bytes() == 3 << 30
    host = types.SimpleNamespace(is_gpu=False, device="cpu")
    with pytest.raises(preflight.PreflightError, match=r"of host memory .* but 3\.0 GiB is available"):
        preflight.check_train_memory(preflight.train_memory(100_000_000, 8, 1, 4, [8, 16, 1], 256), 100_000_000, host)


@pytest.fixture
def launcher_env(monkeypatch):
    from gpunn.distributed import comm

    for name in (*comm._SIZE_VARIABLES, *comm._RANK_VARIABLES, *comm._LOCAL_RANK_VARIABLES,
                 *comm._LOCAL_SIZE_VARIABLES, "SLURM_STEP_TASKS_PER_NODE", "SLURM_NODEID"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("variables, here", [
    ({}, 1), ({"PMI_SIZE": "4", "MPI_LOCALNRANKS": "4"}, 4), ({"OMPI_COMM_WORLD_SIZE": "8",
                                                              "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}, 2),
    ({"PMI_SIZE": "7", "SLURM_STEP_TASKS_PER_NODE": "2(x3),1", "SLURM_NODEID": "1"}, 2),
    ({"PMI_SIZE": "7", "SLURM_STEP_TASKS_PER_NODE": "2(x3),1", "SLURM_NODEID": "3"}, 1),
    ({"PMI_SIZE": "3", "SLURM_STEP_TASKS_PER_NODE": "3", "SLURM_NODEID": "0"}, 3),
    ({"PMI_SIZE": "3", "SLURM_STEP_TASKS_PER_NODE": "3", "SLURM_NODEID": "5"}, 1),  # (not this step's: unknown)
    ({"PMI_SIZE": "2"}, 1),  # a launcher that says no node's count: as before
    ({"SLURM_STEP_TASKS_PER_NODE": "4", "SLURM_NODEID": "0"}, 1),  # a Slurm job not launched by srun: one process
])
def test_the_processes_on_this_node_are_the_launchers_local_count(launcher_env, variables, here):
    for name, value in variables.items():
        launcher_env.setenv(name, value)
    assert preflight.ranks_on_this_node() == here


@pytest.mark.parametrize("variables, here", [
    ({"MV2_COMM_WORLD_SIZE": "6", "MV2_COMM_WORLD_LOCAL_SIZE": "3"}, 3),  # MVAPICH's mpiexec
    ({"PMI_SIZE": "5", "SLURM_STEP_TASKS_PER_NODE": "2(x2,3", "SLURM_NODEID": "0"}, 1),  # a part not read: unknown
    ({"PMI_SIZE": "3", "SLURM_STEP_TASKS_PER_NODE": "3", "SLURM_NODEID": "1"}, 1),  # the node after the last counted
    ({"PMI_SIZE": "7", "SLURM_STEP_TASKS_PER_NODE": "1(x3),2", "SLURM_NODEID": "-1"}, 1),  # no node number
])
def test_the_processes_on_this_node_under_mvapich_and_where_slurms_words_cannot_be_read(launcher_env, variables,
                                                                                      here):
    for name, value in variables.items():
        launcher_env.setenv(name, value)
    assert preflight.ranks_on_this_node() == here


def test_a_launchers_count_of_the_processes_on_this_node_that_is_no_whole_number_is_refused_as_a_command_starts(
        launcher_env):
    """Every command reads it (each rank's share of the host's memory): refused with the launcher's other variables
    as the command starts, not as the memory check reads it after the data was read."""
    from gpunn.cli.common import refuse_bad_settings
    from gpunn.distributed.comm import DistributedError

    launcher_env.setenv("PMI_SIZE", "2")
    launcher_env.setenv("MPI_LOCALNRANKS", "two")
    with pytest.raises(DistributedError, match=r"^MPI_LOCALNRANKS='two' is not a whole number \(an MPI launcher's "
                                               r"variable: how many processes it started on this node\)$"):
        refuse_bad_settings()
    # a memory check is no place to refuse it: a plain Ensemble(...) on the CPU was refused with DistributedError
    assert preflight.ranks_on_this_node() == 1
    gpunn.Ensemble([3, 4, 1], 2, device="cpu", seed=0)


def test_the_host_memory_a_rank_may_use_is_its_share_among_the_ranks_on_its_node(launcher_env):
    """Each rank of mpiexec -n 4 gpunn train on one machine checked the host's whole free memory for its own copy of
    the rows (every rank makes them all): four copies of what fitted once, and the kernel killed the job. A rank now
    checks 1/4 of it, and the refusal says the figure is its share; a GPU's memory is its rank's own."""
    launcher_env.setattr(preflight, "host_available_bytes", lambda: 8 << 30)
    host = types.SimpleNamespace(is_gpu=False, device="cpu")
    need = preflight.train_memory(40_000_000, 8, 1, 4, [8, 16, 1], 256)  # about 3 GiB
    preflight.check_train_memory(need, 40_000_000, host)
    launcher_env.setenv("PMI_SIZE", "4")
    launcher_env.setenv("MPI_LOCALNRANKS", "4")
    assert preflight.available_bytes(host) == preflight.host_share_bytes() == 2 << 30
    with pytest.raises(preflight.PreflightError, match=r"but 2\.0 GiB is available, this process's share: 4 "
                                                       r"processes of the job on this node; about"):
        preflight.check_train_memory(need, 40_000_000, host)
    gpu = types.SimpleNamespace(is_gpu=True, device="cuda:0")
    assert preflight.share_words(gpu) == "" and preflight.share_words() != ""


def test_a_network_refused_for_its_size_says_the_hosts_figure_is_this_processs_share_and_a_gpus_is_its_own(
        launcher_env):
    """The refusal of a network too large for the memory says, as the rows' refusal does, that the host's figure is
    this rank's share of it where a launcher started several processes on the node; a GPU's memory is its rank's
    own, said without a share."""
    launcher_env.setenv("PMI_SIZE", "4")
    launcher_env.setenv("MPI_LOCALNRANKS", "4")
    launcher_env.setattr(preflight, "host_available_bytes", lambda: 8 << 20)
    launcher_env.setattr(preflight, "device_available_bytes", lambda backend: 2 << 20)
    host = types.SimpleNamespace(is_gpu=False, device="cpu")
    with pytest.raises(preflight.PreflightError, match=r"but 2\.0 MiB is available, this process's share: 4 processes "
                                                       r"of the job on this node; use smaller --hidden layers"):
        preflight.check_model_memory([8, 4096, 4096, 1], 256, 4, host)
    gpu = types.SimpleNamespace(is_gpu=True, device="cuda:0")
    with pytest.raises(preflight.PreflightError, match=r"of GPU cuda:0 memory .* but 2\.0 MiB is available; use "):
        preflight.check_model_memory([8, 4096, 4096, 1], 256, 4, gpu)


def test_a_network_that_cannot_fit_by_itself_is_refused_before_the_rows_are_chosen(monkeypatch, capsys, tmp_path):
    """Streaming the rows cannot help a network too large for the memory: gpunn train said "streaming
    (... would not fit comfortably)" and then failed in NumPy with a bare out-of-memory line."""
    import numpy

    from gpunn import cli

    monkeypatch.setattr(preflight, "host_available_bytes", lambda: 64 << 20)  # 64 MiB
    big = ["--hidden", "2048,2048", "--device", "cpu", "--quiet"]  # 4.2M parameters x 4 copies: 67 MB and more
    assert cli.main(["train", "--rows", "1000", *big]) == 2
    err = capsys.readouterr().err
    assert "the network [32, 2048, 2048, 1] alone needs about" in err and "use smaller --hidden" in err
    numpy.save(tmp_path / "x.npy", numpy.zeros((100, 3)))
    numpy.save(tmp_path / "y.npy", numpy.zeros((100, 1)))
    assert cli.main(["train", "--data", str(tmp_path / "x.npy"), "--targets", str(tmp_path / "y.npy"), *big]) == 2
    assert "the network [3, 2048, 2048, 1] alone needs about" in capsys.readouterr().err
    assert cli.main(["train", "--rows", "1000", "--hidden", "64", "--epochs", "1", "--device", "cpu", "--quiet"]) == 0


def test_the_network_check_counts_the_workspaces_of_a_whole_batch(monkeypatch, capsys):
    """check_model_memory counted a batch of 1 row (train_memory with rows=1 capped the batch at 1), though it says
    "workspaces for a batch of N": a 17 MB network with a 65,536-row batch (1.6 GB of workspaces) passed it and was
    streamed, to need that memory once training began (found by mut12m's mutation check: train_memory's batch
    min(batch_size, rows) -> batch_size passed). A batch is at most the training rows."""
    from gpunn import cli

    monkeypatch.setattr(preflight, "host_available_bytes", lambda: 256 << 20)
    host = types.SimpleNamespace(is_gpu=False, device="cpu")
    sizes = [32, 1024, 1024, 1]
    preflight.check_model_memory(sizes, 256, 4, host)
    with pytest.raises(preflight.PreflightError,
                       match=r"alone needs about 1\.5 GiB .* workspaces for a batch of 65,536\)"):
        preflight.check_model_memory(sizes, 65536, 4, host)
    preflight.check_model_memory(sizes, 65536, 4, host, rows=1000)
    # nor does the whole run's estimate count more than the rows (P6, batch = batch_size, refused this 1,000-row run)
    preflight.check_train_memory(preflight.train_memory(1000, 32, 1, 4, sizes, 65536), 1000, host)
    big_batch = ["--hidden", "1024,1024", "--batch-size", "65536", "--device", "cpu", "--quiet"]
    assert cli.main(["train", "--rows", "100000", *big_batch]) == 2
    assert "workspaces for a batch of 65,536) but 256.0 MiB is available" in capsys.readouterr().err
    assert cli.main(["train", "--rows", "1000", "--epochs", "1", *big_batch]) == 0  # its batch is the 900 rows


def test_the_memory_checks_count_a_cuda_graph_on_a_gpu_unless_no_graph():
    from gpunn.cli.data import counts_graph

    gpu, cpu = fake_gpu(8 << 30), types.SimpleNamespace(is_gpu=False, device="cpu")
    assert counts_graph(types.SimpleNamespace(graph=None), gpu)  # the default captures a graph on a GPU
    assert counts_graph(types.SimpleNamespace(graph=True), gpu)
    assert not counts_graph(types.SimpleNamespace(graph=False), gpu)  # --no-graph
    assert not counts_graph(types.SimpleNamespace(graph=True), cpu)


@pytest.mark.parametrize("text, said", [
    ("1,2,3\n4,x,6\n", "line 2: value 2 of the line: 'x' is not a number"),
    ("a,b,c\n1,2,3\n4,,6\n", "line 3: column 'b': an empty value (a missing number) is not a number; clean or "
                            "impute it first"),
    ("a,b,c\n1,2,3\n\n4,,6\n", "line 4: column 'b': an empty value (a missing number) is not a number; clean or "
                               "impute it first"),
    ('a,b,c\n1,2,3\n4,"o\'k ""x""",6\n', "line 3: column 'b': 'o\\'k \"x\"' is not a number"),  # unquoted, as read
    ("1,2,3\n4,5,6\n7,8\n", "line 3: 2 values, where the lines before it have 3"),
    ("a,b,c\n1,2,3\n4,5,6,7\n", "line 3: 4 values, where the lines before it have 3"),
    ('"a","b\nc",d\r\n1,2,3\r\n4,5\r\n', "line 4: 2 values, where the lines before it have 3"),
    ("a,b,c\n1,2\n4,5,6\n", "line 2: 2 values, where the lines before it have 3"),  # the header's 3, as streamed
    # a header ending in a comma is named as the cause of the first row's width (a word in that row or not), and of
    # no later row's: the first row had the header's width
    ("a,b,y,\n1,x,3\n", "line 2: 3 values, where the header row names 4 columns, its last without a name: the header "
                        "line ends in a comma (remove it)"),
    ("a,b,\n1,2,3\n4,5\n", "line 3: 2 values, where the lines before it have 3"),
])
def test_a_csv_input_that_is_not_numbers_is_located_as_the_streamed_reader_locates_a_bad_value(tmp_path, text, said):
    """numpy.loadtxt's own words: a value's row counted from 0 after the header but its column from 1, the row of
    a changed column count from 1, and advice to use loadtxt's usecols, which no gpunn command has. Then rows and
    columns counted from 0 after the header; now the line an editor shows (from 1, the header's lines and an empty
    line counted) and the column's name (its place on the line in a file without a header), as every CSV error; a
    value that is not a number and a row of another width in the streamed readers' words ("line 3: column 'b': 'x'
    is not a number", "line 3: 2 values, where the lines before it have 3")."""
    (tmp_path / "in.csv").write_bytes(text.encode())
    with pytest.raises(preflight.PreflightError) as raised:
        preflight.read_matrix(tmp_path / "in.csv", "IN")
    assert str(raised.value) == f"IN {tmp_path / 'in.csv'} {said}"


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_a_csv_input_whose_quoted_header_name_holds_a_line_end_is_read_past_the_header(tmp_path, newline):
    """numpy.loadtxt skips the header by lines: a name on two lines is two to skip, whatever the line ends."""
    (tmp_path / "in.csv").write_bytes(f'a,"b{newline}c",y{newline}1,2,3{newline}4,5,6{newline}'.encode())
    numpy.testing.assert_array_equal(preflight.read_matrix(tmp_path / "in.csv"), [[1, 2, 3], [4, 5, 6]])


def test_an_output_named_as_a_directory_not_made_yet_is_refused_before_any_work(tmp_path, capsys):
    """--json results/ passed the check (its parent, the working directory, exists), the run trained, and the
    JSON write then failed: "[Errno 20] cannot write results/: Not a directory"."""
    from gpunn import cli

    out = f"{tmp_path}/results/"
    with pytest.raises(preflight.PreflightError, match=r"names a directory \(it ends in /\); give a file name"):
        preflight.check_output(out, "--json")
    assert cli.main(["train", "--rows", "100", "--features", "2", "--hidden", "4", "--epochs", "1", "--device", "cpu",
                     "--quiet", "--json", out]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == f"gpunn train: error: --json {out} names a directory (it ends in /); give a file name"
    assert "device:" not in captured.out  # refused before the data were made


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="needs Linux's sysfs")
def test_an_output_directory_that_refuses_new_files_is_refused_before_any_work(tmp_path, capsys):
    """os.access asks the permission bits, which root passes: sysfs (an NFS export that squashes root, a FUSE mount)
    refuses the file itself, so as root gpunn predict predicted, and gpunn train trained its first epoch, before
    "[Errno 13] cannot write /sys/o.npy: Permission denied". A file is made there (and removed) to find out."""
    import gpunn
    from gpunn import cli

    numpy.save(tmp_path / "in.npy", numpy.ones((4, 2)))
    gpunn.save(tmp_path / "m.npz", gpunn.MLP([2, 1], device="cpu"))
    assert cli.main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "in.npy"), "/sys/o.npy"]) == 2
    said = capsys.readouterr().err
    assert said.startswith("gpunn predict: error: OUT /sys/o.npy: directory /sys is not writable")
    assert "/sys/tmp" not in said  # the OSError's words, not the name of the file it tried to make (as root)
    assert cli.main(["train", "--rows", "100", "--features", "2", "--hidden", "4", "--epochs", "1", "--device", "cpu",
                     "--quiet", "--save", "/sys/m.npz"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("gpunn train: error: --save /sys/m.npz: directory /sys is not writable")
    assert "device:" not in captured.out  # refused before the data were made
    assert preflight.check_output(str(tmp_path / "o.npy"), "OUT") and os.listdir(tmp_path) == ["in.npy", "m.npz"]


def test_an_output_that_is_a_directory_is_refused_and_save_may_name_the_checkpoint_resumed(tmp_path):
    """An existing directory is no output file (mut12m's P14: without the check it passed, and the run would fail at
    its end); --save over the checkpoint --resume reads is how a run continues in place, while any other output
    may not overwrite it (P21: the resumed checkpoint counted for --save too passed every test)."""
    import argparse

    with pytest.raises(preflight.PreflightError, match="--json .* is a directory; give a file name"):
        preflight.check_output(str(tmp_path), "--json")
    with pytest.raises(preflight.PreflightError, match="--json needs a file name"):  # (P32: '' passed, the cwd's)
        preflight.check_output("", "--json")
    # a name's ending is compared in any case (P16: a case-sensitive comparison refused loss.PNG)
    assert preflight.check_output(str(tmp_path / "loss.PNG"), "--plot", suffixes=(".png", ".pdf"))
    run = tmp_path / "run.npz"
    run.write_bytes(b"PK\x03\x04")
    args = argparse.Namespace(resume=str(run), data=None, targets=None)
    preflight.check_checkpoint_output(str(run), "--save", reads=preflight.inputs_read(args, resume=False))
    with pytest.raises(preflight.PreflightError, match="is the checkpoint being resumed this command reads"):
        preflight.check_output(str(run), "--json", reads=preflight.inputs_read(args))


def test_save_refuses_an_npz_of_arrays_and_takes_an_empty_file_as_gpunn_save_does(tmp_path):
    """--save took any zip for a checkpoint, so numpy.savez's X and Y were replaced by the model, and refused the
    empty file gpunn.save replaces (mktemp's): one rule, gpunn.checkpoint.not_a_checkpoint."""
    import gpunn

    arrays, empty, model = tmp_path / "arrays.npz", tmp_path / "empty.npz", tmp_path / "m.npz"
    numpy.savez(arrays, X=numpy.ones((2, 2)), Y=numpy.ones(2))
    empty.write_bytes(b"")
    gpunn.save(model, gpunn.MLP([2, 1], device="cpu"))
    refusal = (r"--save .*arrays.npz exists and is not a gpunn checkpoint \(an .npz archive of the arrays X, Y\); "
               r"refusing to overwrite it: choose another name \(.npz\), or remove the file first$")
    with pytest.raises(preflight.PreflightError, match=refusal):
        preflight.check_checkpoint_output(str(arrays), "--save")
    for path in (empty, model, tmp_path / "new.npz"):
        assert preflight.check_checkpoint_output(str(path), "--save") == str(path)



@pytest.mark.parametrize("arrays, files, said", [
    (["X"], [], "an .npz archive of the array X"),
    (["a", "b", "c", "d"], [], "an .npz archive of the arrays a, b, c and 1 more"),
    ([], ["notes.txt"], "a zip archive of notes.txt"),
    ([], [], "an empty zip archive"),
], ids=["one array", "four arrays", "other files", "empty"])
def test_a_zip_that_is_no_checkpoint_is_named_by_its_first_three_arrays_or_files(tmp_path, arrays, files, said):
    """What a checkpoint writer refuses to replace (and --resume refuses to read) is said by what it holds: an array
    without a plural, three names and how many more, a zip's own files where it holds no array."""
    import zipfile

    path = tmp_path / "x.npz"
    if arrays:
        numpy.savez(path, **{name: numpy.zeros(1) for name in arrays})
    else:
        with zipfile.ZipFile(path, "w") as archive:
            for name in files:
                archive.writestr(name, "a note")
    assert preflight.not_a_checkpoint(str(path)) == said


def test_a_pytorch_file_is_said_to_be_one_and_gpunn_load_says_how_its_weights_come_in(tmp_path):
    """torch.save(net.state_dict(), "net.pt"), given to gpunn.load by a porter, was "not a gpunn checkpoint (a zip
    archive of net/data.pkl, net/.format_version, net/.storage_alignment and 5 more)": torch's file layout (a stand-in
    here, as CI has no torch) is named, and gpunn.load (gpunn train --resume too) says how its weights come in; a
    writer refuses to replace it, naming it so. Another zip with a data.pkl is not taken for one."""
    import zipfile

    import gpunn

    path, old, other = tmp_path / "net.pt", tmp_path / "old.pt", tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as archive:  # torch 2.13's layout (its .storage_alignment and others left out)
        for name in ("net/data.pkl", "net/.format_version", "net/byteorder", "net/data/0"):
            archive.writestr(name, "x")
    with zipfile.ZipFile(old, "w") as archive:  # torch 1.6 to 2.0's
        for name in ("archive/data.pkl", "archive/data/0", "archive/version"):
            archive.writestr(name, "x")
    with pytest.raises(gpunn.CheckpointError, match=r"not a gpunn checkpoint \(a PyTorch file, torch.save's\): "):
        gpunn.load(old)
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("pickles/data.pkl", "x")
    with pytest.raises(gpunn.CheckpointError, match=r"net.pt: not a gpunn checkpoint \(a PyTorch file, torch.save's\): "
                                                    r"torch.load reads it, and gpunn.MLP takes its weights layer by "
                                                    r"layer, each nn.Linear's transposed \(README: Coming from "
                                                    r"PyTorch\)$"):
        gpunn.load(path)
    with pytest.raises(FileExistsError, match=r"is not a gpunn checkpoint \(a PyTorch file, torch.save's\); refusing"):
        gpunn.save(path, gpunn.MLP([2, 1], device="cpu"))
    with pytest.raises(gpunn.CheckpointError, match=r"not a gpunn checkpoint \(a zip archive of pickles/data.pkl\)$"):
        gpunn.load(other)


def test_an_empty_zip_is_said_to_be_one_by_load_and_save(tmp_path):
    """numpy.savez of no arrays writes a zip of no files, which begins with the zip's end record, not a file's: it was
    "not a gpunn checkpoint (binary, not an .npz/zip archive)" to gpunn.load and "binary" to gpunn.save."""
    import gpunn

    path = tmp_path / "nothing.npz"
    numpy.savez(path)
    with pytest.raises(gpunn.CheckpointError, match=r"not a gpunn checkpoint \(an empty zip archive\)$"):
        gpunn.load(path)
    with pytest.raises(FileExistsError, match=r"is not a gpunn checkpoint \(an empty zip archive\); refusing"):
        gpunn.save(path, gpunn.MLP([2, 1], device="cpu"))

def test_dev_stdout_is_written_into_even_where_stdout_is_a_file(capfd):
    """/dev/stdout is a link into /proc: where standard output is a regular file (as under pytest's capture), a
    checkpoint or report written there must go into it, not be renamed over the link (mut12m's P28: without the link
    check it counted as an ordinary path, and passed)."""
    import os
    import stat

    if not stat.S_ISREG(os.fstat(1).st_mode):
        pytest.skip("standard output is not a regular file here")
    assert preflight.writes_in_place("/dev/stdout")
    assert preflight.writes_in_place("/dev/fd/1")  # a file reached through /proc (P29: the /proc folder check dropped)


def test_a_pickle_given_as_an_input_is_refused_as_a_pickle(tmp_path):
    """By its bytes, whatever its name, and never unpickled (mut12m's P26: without the pickle case it was 'neither a
    .npy array nor a CSV file', and passed)."""
    import pickle

    path = tmp_path / "x.npy"
    path.write_bytes(pickle.dumps([[1.0, 2.0]]))
    with pytest.raises(preflight.PreflightError, match="is a Python pickle; gpunn never unpickles"):
        preflight.read_matrix(path, "--data")


def test_two_outputs_naming_one_file_through_a_linked_directory_are_refused(tmp_path):
    """Outputs are compared by the files they resolve to, not by their names as written: a report written through a
    link to its directory and another to the file itself wrote one file twice, the second over the first (mutation
    audit32c F1: names compared as written passed every test)."""
    (tmp_path / "runs").mkdir()
    os.symlink(tmp_path / "runs", tmp_path / "latest")
    same = [("--json", str(tmp_path / "runs" / "r.txt")), ("--csv", str(tmp_path / "latest" / "r.txt"))]
    with pytest.raises(preflight.PreflightError, match=r"--json and --csv both name .*latest/r\.txt; give each its own"):
        preflight.check_distinct(same)
    preflight.check_distinct([same[0], ("--csv", str(tmp_path / "latest" / "other.txt"))])  # two files: fine


def test_two_outputs_that_both_name_standard_output_are_refused(tmp_path, capsys):
    """README: --json - writes to standard output, and /dev/stdout does the same. --json /dev/stdout --csv - wrote
    the JSON and then the CSV into one stream; --json - --csv - was refused."""
    from gpunn import cli

    for first in ("-", "/dev/stdout"):
        with pytest.raises(preflight.PreflightError, match="--json and --csv both name standard output"):
            preflight.check_distinct([("--json", first), ("--csv", "-")])
    preflight.check_distinct([("--json", "-"), ("--csv", str(tmp_path / "h.csv"))])  # one each: fine
    assert cli.main(["train", "--rows", "100", "--features", "2", "--hidden", "4", "--epochs", "1", "--device", "cpu",
                     "--quiet", "--json", "/dev/stdout", "--csv", "-"]) == 2
    assert "--json and --csv both name standard output" in capsys.readouterr().err



@pytest.mark.parametrize("before", [4093, 4094, 4095])
def test_a_utf8_character_cut_by_the_first_4096_bytes_is_still_text(tmp_path, before):
    """file_kind reads 4096 bytes: a character of up to 4 bytes that starts in the last 3 is cut, not foreign."""
    path = tmp_path / "x.csv"
    path.write_bytes(b"1" * before + "\U0001F600".encode() + b"\n")  # 4 bytes: cut after 3, 2 or 1 of them
    assert preflight.file_kind(path) == "text"


@pytest.mark.parametrize("text", [b"a,b\n1,2\n3,caf\xe9\n", b"a,b\n1,2\n3,caf\xe9", b"1" * 4093 + b"\xe9\n1,2\n",
                                  b"1" * 4095 + b"\xe9"], ids=["last-line", "last-byte", "window", "4096-bytes"])
def test_a_latin1_byte_near_the_end_of_a_file_or_of_the_window_is_not_taken_for_a_cut_character(tmp_path, text):
    """A file that ends within the 4096 bytes has no character cut by them, nor has a window whose last bytes decode
    as far as they go: a Latin-1 'é' in a file's last 3 bytes (or followed by a line end in the window's) was taken
    for a cut character and the file for UTF-8 text, then refused in the codec's words ("can't decode byte 0xe9")
    instead of NOT_UTF8's, which the same file with its 'é' elsewhere gets."""
    path = tmp_path / "x.csv"
    path.write_bytes(text)
    assert preflight.file_kind(path) == "text-8bit"
    with pytest.raises(preflight.PreflightError, match="is text, but not UTF-8"):
        preflight.read_matrix(path)


@pytest.mark.parametrize("protocol, obj", [(0, {"X": 1}), (0, [1, 2]), (1, {"X": 1}), (1, [1, 2]), (2, [1, 2]),
                                           (5, {"X": 1}), (0, numpy.arange(3.0)), (1, numpy.arange(3.0)),
                                           (0, collections.OrderedDict(a=1.5)), (1, fractions.Fraction(1, 3)),
                                           ("0 optimized", numpy.arange(3.0)),
                                           ("1 optimized", collections.OrderedDict(a=1.5))],
                         ids=["0-dict", "0-list", "1-dict", "1-list", "2-list", "5-dict", "0-array", "1-array",
                              "0-global", "1-global", "0-global-mark", "1-global-empty-tuple"])
def test_a_pickle_is_told_by_its_first_bytes(tmp_path, protocol, obj):
    """A protocol-1 list (]q) was "binary", and a protocol-0 or 1 pickle that starts with a global (an array's
    "cnumpy._core.multiarray\\n_reconstruct\\np0\\n") "text, but not UTF-8 (... as Excel ... writes)". A pickle
    without memo entries (pickletools.optimize's) has a mark or an empty tuple after its global instead."""
    import pickle
    import pickletools

    pickled = pickle.dumps(obj, protocol=int(str(protocol).split()[0]))
    if "optimized" in str(protocol):
        pickled = pickletools.optimize(pickled)
        after_global = pickled.split(b"\n", 2)[2]
        assert after_global[:1] in (b"(", b")")
    path = tmp_path / "x.pkl"
    path.write_bytes(pickled)  # (d (l }q ]q, a global or \x80: never unpickled to find out
    assert preflight.file_kind(path) == "pickle"
    with pytest.raises(preflight.PreflightError, match="is a Python pickle; gpunn never unpickles"):
        preflight.read_matrix(path)


@pytest.mark.parametrize("text, kind", [(b"count\n3\n", "text"), (b"cost\nprice\n1\n", "text"),
                                        (b"c\xe9\nx\np\n", "text-8bit"), (b"cnumpy\nndarray\n", "text"),
                                        (b"cost\n5\n(n/a)\n", "text"), (b"c1\nNA\n(n/a)\n", "text"),
                                        (b"x\ncat\ndog\n(n/a)\n", "text")])
def test_a_one_column_csv_starting_with_c_is_not_taken_for_a_pickle_global(tmp_path, text, kind):
    """A pickle's global is "c" module, a line end, a name, a line end, then a memo or a mark: a one-column CSV has
    the first two lines' shape (a header starting with c, a number), so the third is checked too; the module and
    the name start as Python's do (not "c1", "5"), and the global is the file's first bytes (not a later "cat")."""
    path = tmp_path / "x.csv"
    path.write_bytes(text)
    assert preflight.file_kind(path) == kind


@pytest.mark.parametrize("name, said", [("x.csv", r"not a CSV file \(binary, not text\)"),
                                        ("X.CSV", r"not a CSV file \(binary, not text\)"),
                                        ("x.dat", r"not a .npy array \(no .npy header\), and binary")])
def test_a_binary_file_is_refused_against_what_its_name_says_it_is_in_any_letter_case(tmp_path, name, said):
    path = tmp_path / name
    path.write_bytes(b"\x01\x02\x00\x03" * 8)
    with pytest.raises(preflight.PreflightError, match=f"{name}: {said}"):
        preflight.read_matrix(path)


def test_without_pyarrow_a_word_numpy_cut_to_100_characters_is_named_without_numpys_quote(tmp_path, monkeypatch):
    """NumPy quotes the value it could not convert as repr() does, cut to 100 characters (no closing quote, so not
    a literal to evaluate): the name given is the value's own text, not NumPy's quote before it."""
    import sys

    for name in ("pyarrow", "pyarrow.csv"):  # without pyarrow the column's first block is not typed: NumPy's value
        monkeypatch.setitem(sys.modules, name, None)
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n3," + "w" * 150 + "\n")
    with pytest.raises(preflight.PreflightError, match="line 3: column 'b': 'wwwww") as refused:
        preflight.read_matrix(path)
    assert "\"'w" not in str(refused.value)
    assert "'" + "w" * 99 + "'" in str(refused.value)  # NumPy's 99 characters, none dropped with its quote


def test_an_output_under_a_file_is_said_to_be_under_a_file_not_in_a_missing_directory(tmp_path):
    """OUT notes.txt/o.npy said "directory notes.txt does not exist", of a file that does: the user looked for it."""
    (tmp_path / "notes.txt").write_text("mine")
    for under in ("notes.txt/o.npy", "notes.txt/a/b/o.npy"):
        with pytest.raises(preflight.PreflightError) as caught:
            preflight.check_output(str(tmp_path / under), "OUT")
        assert str(caught.value) == f"OUT {tmp_path / under}: {tmp_path / 'notes.txt'} is a file, not a directory"
    with pytest.raises(preflight.PreflightError, match=r"o\.npy: directory .*/nodir does not exist$"):
        preflight.check_output(str(tmp_path / "nodir" / "o.npy"), "OUT")
    (tmp_path / "scratch").symlink_to(tmp_path / "unmounted")  # (audit46b) a link to nothing is no file
    with pytest.raises(preflight.PreflightError) as caught:
        preflight.check_output(str(tmp_path / "scratch" / "o.npy"), "OUT")
    assert str(caught.value) == f"OUT {tmp_path / 'scratch' / 'o.npy'}: directory {tmp_path / 'scratch'} does not exist"
