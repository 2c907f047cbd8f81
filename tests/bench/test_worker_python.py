"""``--python BACKEND=PATH``: one backend's worker runs under another interpreter (another venv),
and one sweep still makes one table. The other interpreter here is a real executable wrapper that
records each start and then runs this Python."""

from __future__ import annotations

import json
import stat
import sys

import pytest
from helpers import QUICK_BENCH

from vggbench.bench import sweep
from vggbench.cli import main
from vggbench.errors import VggbenchError


def _wrapper(tmp_path):
    marks = tmp_path / "starts.txt"
    python = tmp_path / "venv-b" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\necho "$@" >> "{marks}"\nexec "{sys.executable}" "$@"\n')
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    return python, marks


def test_a_backend_runs_its_worker_with_the_named_interpreter(bench_run_dir, data_dir, tmp_path):
    python, marks = _wrapper(tmp_path)
    document = sweep.sweep([str(bench_run_dir)], backends=["ort-cpu", "mxnet"], data_dir=str(data_dir),
                           log=lambda line: None, worker_python={"mxnet": str(python)},
                           **dict(QUICK_BENCH, batch_sizes=[1], modes=["end-to-end"]))
    assert document["settings"]["worker_python"] == {"mxnet": str(python)}
    starts = marks.read_text().splitlines()
    assert starts and all(line == "-m vggbench.bench.worker" for line in starts)  # mxnet's probe and worker
    assert {row.backend for row in document["rows"] if row.ok} == {"ort-cpu", "mxnet"}


def test_a_python_that_is_not_an_interpreter_is_a_one_line_error(bench_run_dir, tmp_path, capsys):
    with pytest.raises(VggbenchError, match="not an executable file"):
        sweep.sweep([str(bench_run_dir)], worker_python={"mxnet": str(tmp_path / "missing")})
    with pytest.raises(SystemExit):
        main(["bench", str(bench_run_dir), "--python", "tvm=/usr/bin/python3"])
    assert "BACKEND=PATH" in capsys.readouterr().err


def test_the_cli_records_the_interpreter(bench_run_dir, data_dir, tmp_path):
    python, marks = _wrapper(tmp_path)
    out = tmp_path / "results.json"
    code = main(["bench", str(bench_run_dir), "--backends", "ort-cpu", "--batch-sizes", "1", "--modes", "end-to-end",
                 "--rounds", "2", "--iters", "1", "--warmup", "1", "--accuracy-limit", "0", "--peak-sizes", "64",
                 "--data-dir", str(data_dir), "--python", f"ort-cpu={python}", "--json", str(out)])
    assert code == 0 and json.loads(out.read_text())["settings"]["worker_python"] == {"ort-cpu": str(python)}
    assert marks.read_text().count("vggbench.bench.worker") >= 1
