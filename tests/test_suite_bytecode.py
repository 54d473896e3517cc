"""The suite's bytecode where PYTHONDONTWRITEBYTECODE=1 (tests/conftest.py, _keep_bytecode): kept in a directory of
its own, never beside the sources; in the venv, from run to run, for the run's process and its children; elsewhere
in one of the session, for the children."""
import os
import sys

import pytest

import conftest


@pytest.fixture
def dont_write_bytecode(monkeypatch, tmp_path):
    """A process started with PYTHONDONTWRITEBYTECODE=1 and no PYTHONPYCACHEPREFIX, in the venv tmp_path/venv."""
    venv = tmp_path / "venv"
    venv.mkdir()
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.setattr(sys, "pycache_prefix", None)
    monkeypatch.setattr(sys, "prefix", str(venv))
    monkeypatch.setattr(sys, "base_prefix", str(tmp_path / "python"))
    monkeypatch.delenv("PYTHONPYCACHEPREFIX", raising=False)
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    return venv


def test_in_a_venv_the_run_and_its_children_keep_their_bytecode_in_the_venvs_gpunn_pycache(dont_write_bytecode):
    conftest._keep_bytecode()
    kept = str(dont_write_bytecode / "gpunn-pycache")
    assert (sys.pycache_prefix, os.environ["PYTHONPYCACHEPREFIX"], sys.dont_write_bytecode) == (kept, kept, False)
    assert "PYTHONDONTWRITEBYTECODE" not in os.environ


def test_outside_a_venv_only_the_children_keep_theirs_in_a_directory_of_the_session(dont_write_bytecode,
                                                                                       monkeypatch):
    monkeypatch.setattr(sys, "base_prefix", sys.prefix)
    conftest._keep_bytecode()
    assert os.environ["PYTHONPYCACHEPREFIX"] == conftest._SESSION_CACHE[-1]  # removed as the session ends
    assert os.path.basename(conftest._SESSION_CACHE[-1]).startswith("gpunn-test-pycache-")
    assert (sys.pycache_prefix, sys.dont_write_bytecode) == (None, True)  # this process: its bytecode as it was
    assert "PYTHONDONTWRITEBYTECODE" not in os.environ


def test_a_prefix_already_set_or_bytecode_written_is_left_as_it_is(dont_write_bytecode, monkeypatch):
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", "/somewhere")
    conftest._keep_bytecode()
    monkeypatch.delenv("PYTHONPYCACHEPREFIX")
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    conftest._keep_bytecode()
    assert sys.pycache_prefix is None and "PYTHONPYCACHEPREFIX" not in os.environ
    assert os.environ["PYTHONDONTWRITEBYTECODE"] == "1"
