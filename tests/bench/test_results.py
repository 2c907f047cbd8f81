"""The row model's status: a typed Status and reason that read and write the JSON's string form."""

from __future__ import annotations

import json

import pytest

from vggbench.bench import results as R
from vggbench.bench.report import Footnotes


def test_status_round_trips_on_the_rows_of_a_real_sweep(bench_results):
    seen = set()
    for row in json.loads(json.dumps(bench_results["rows"])):  # as a results file holds them
        status, reason = R.row_status(row)
        seen.add(status)
        copy = dict(row)
        R.set_status(copy, status, reason)
        assert copy["status"] == row["status"]
        assert (reason is None) == (status is R.Status.OK)
    assert R.Status.OK in seen and R.Status.UNAVAILABLE in seen  # this machine has no GPU: GPU rows are unavailable


@pytest.mark.parametrize("text, status, reason", [
    ("ok", R.Status.OK, None),
    ("unavailable: no CUDAExecutionProvider: install the gpu extra", R.Status.UNAVAILABLE,
     "no CUDAExecutionProvider: install the gpu extra"),
    ("error: worker killed by SIGKILL (out of memory?) during batch 2 e2e", R.Status.ERROR,
     "worker killed by SIGKILL (out of memory?) during batch 2 e2e"),
    ("error", R.Status.ERROR, None)])
def test_status_strings_of_the_previous_release_read_back(text, status, reason):
    assert R.row_status({"status": text}) == (status, reason)
    assert R.status_text(status, reason) == text


def test_an_unknown_status_word_counts_as_an_error_and_sets_the_exit_code():
    rows = [{"status": "ok"}, {"status": "exploded: sorry"}]
    assert R.row_status(rows[1]) == (R.Status.ERROR, "unknown status 'exploded: sorry'")
    assert R.exit_code(rows) == 3 and R.exit_code(rows[:1]) == 0
    assert R.exit_code([{"status": "unavailable: no GPU"}]) == 0


def test_footnotes_number_each_reason_once():
    notes = Footnotes()
    marks = [notes.status(row) for row in ({"status": "unavailable: no GPU"}, {"status": "error: crashed"},
                                           {"status": "unavailable: no GPU"}, {"status": "ok", "noisy": True})]
    assert marks == ["unavailable [1]", "error [2]", "unavailable [1]", "ok, noisy"]
    assert notes.lines() == ["[1] no GPU", "[2] crashed"]
