"""The row model: a typed Row with a Status and a reason, whose JSON is the previous release's."""

from __future__ import annotations

import json

import pytest

from vggbench.bench import results as R
from vggbench.bench.report import Footnotes


def _row(status=R.Status.OK, reason=None, **fields):
    return R.Row(model="vgg11", input_size=96, width_ratio=8.0, backend="ort-cpu", status=status, reason=reason,
                 **fields)


def test_rows_of_a_real_sweep_round_trip_through_json(bench_results, tmp_path):
    rows = bench_results["rows"]
    assert rows and all(isinstance(row, R.Row) for row in rows)
    seen = set()
    for row in rows:
        as_json = json.loads(json.dumps(row.to_json()))  # as a results file holds it
        assert list(as_json)[:len(R.ROW_KEYS)] == list(R.ROW_KEYS)
        assert as_json["status"] == R.status_text(row.status, row.reason)
        assert (row.reason is None) == row.ok
        assert R.Row.from_json(as_json) == row
        seen.add(row.status)
    assert R.Status.OK in seen and R.Status.UNAVAILABLE in seen  # this machine has no GPU: GPU rows are unavailable
    path = tmp_path / "results.json"
    R.write_results(path, bench_results)
    document = json.loads(path.read_text())
    assert [set(row) for row in document["rows"]] == [set(R.ROW_KEYS)] * len(rows)  # the JSON keys are unchanged
    loaded = R.load_results([path])["rows"]
    assert [(r.backend, r.precision, r.status, r.reason, r.images_per_s) for r in loaded] == \
        [(r.backend, r.precision, r.status, r.reason, r.images_per_s) for r in rows]
    assert {r.source for r in loaded} == {str(path)}


def test_json_of_the_previous_release_reads_into_rows_and_writes_back_the_same():
    old = {key: None for key in R.ROW_KEYS}
    old.update(model="vgg11", input_size=96, width_ratio=1.0, backend="ort-cuda", device="gpu:0", precision="fp32",
               status="unavailable: no CUDAExecutionProvider", gpu_memory_idle_bytes=123, newer_key=[1, 2])
    row = R.Row.from_json(old)
    assert (row.status, row.reason) == (R.Status.UNAVAILABLE, "no CUDAExecutionProvider")
    assert row.gpu_memory_idle_bytes == 123 and row.extra == {"newer_key": [1, 2]}
    assert row.to_json() == old  # optional and unknown keys kept


def test_a_row_refuses_a_field_it_does_not_have():
    row = _row()
    with pytest.raises(AttributeError, match="Row has no field 'images_per_sec'"):
        row.images_per_sec = 1.0
    with pytest.raises(AttributeError, match="Row has no field 'latency_p95_ms'"):
        row.update(images_per_s=2.0, latency_p95_ms=1.0)


def test_set_status_and_copy():
    row = _row(images_per_s=10.0)
    twin = row.copy(backend="openvino")
    row.set_status(R.Status.ERROR, "worker died during batch 16 e2e")
    assert row.to_json()["status"] == "error: worker died during batch 16 e2e" and not row.ok
    assert twin.ok and twin.backend == "openvino" and twin.images_per_s == 10.0


@pytest.mark.parametrize("text, status, reason", [
    ("ok", R.Status.OK, None),
    ("unavailable: no CUDAExecutionProvider: install the gpu extra", R.Status.UNAVAILABLE,
     "no CUDAExecutionProvider: install the gpu extra"),
    ("error: worker killed by SIGKILL (out of memory?) during batch 2 e2e", R.Status.ERROR,
     "worker killed by SIGKILL (out of memory?) during batch 2 e2e"),
    ("error", R.Status.ERROR, None)])
def test_status_strings_of_the_previous_release_read_back(text, status, reason):
    assert R.parse_status(text) == (status, reason)
    assert R.status_text(status, reason) == text


def test_an_unknown_status_word_counts_as_an_error_and_sets_the_exit_code():
    rows = [R.Row.from_json({"model": "vgg11", "backend": "ort-cpu", "status": text})
            for text in ("ok", "exploded: sorry")]
    assert (rows[1].status, rows[1].reason) == (R.Status.ERROR, "unknown status 'exploded: sorry'")
    assert R.exit_code(rows) == 3 and R.exit_code(rows[:1]) == 0
    assert R.exit_code([_row(R.Status.UNAVAILABLE, "no GPU")]) == 0


def test_footnotes_number_each_reason_once():
    notes = Footnotes()
    marks = [notes.status(row) for row in (_row(R.Status.UNAVAILABLE, "no GPU"), _row(R.Status.ERROR, "crashed"),
                                           _row(R.Status.UNAVAILABLE, "no GPU"), _row(noisy=True))]
    assert marks == ["unavailable [1]", "error [2]", "unavailable [1]", "ok, noisy"]
    assert notes.lines() == ["[1] no GPU", "[2] crashed"]
