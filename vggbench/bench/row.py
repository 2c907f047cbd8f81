"""The result row: what one measurement is (a typed :class:`Row` with a :class:`Status` and a
reason) and its JSON form, which is the previous release's.

Kept apart from :mod:`vggbench.bench.results` (schema, file I/O, speedups) so every stage that
reads rows (ceilings, recommendations, reports) depends on the type alone.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Dict, List, Optional, Tuple


class Status(enum.Enum):
    """What became of a row. The JSON keeps the previous release's string form: ``ok``,
    ``unavailable: <reason>`` (this machine cannot run it), ``error: <message>`` (it failed while
    measuring); a :class:`Row` holds the status and the reason apart (:meth:`Row.to_json` joins them,
    :func:`parse_status` splits them)."""

    OK = "ok"
    UNAVAILABLE = "unavailable"
    ERROR = "error"



@dataclasses.dataclass
class Row:
    """One result row: what was measured (model, backend, device, precision, batch size, mode),
    its :class:`Status` and reason, and the measured fields (``None`` where a value does not apply).

    The sweep fills a row in stages (timing, resources, accuracy, speedups, ceilings), so a row is
    mutable, but only its own fields can be set: a misspelt name is an ``AttributeError``, not a
    silent new key. The JSON form (:meth:`to_json`, :meth:`from_json`) is the previous release's:
    the keys of :data:`ROW_KEYS` in that order, ``status`` as ``ok`` / ``unavailable: <reason>`` /
    ``error: <message>``, then the optional keys that are set and any keys a newer writer added.
    Units are in the names (``images_per_s``, ``latency_p99_ms``, ``memory_peak_rss_bytes``).
    """

    model: str
    input_size: Optional[int]
    width_ratio: Optional[float]
    backend: str
    device: Optional[str] = None
    precision: Optional[str] = None
    batch_size: Optional[int] = None
    mode: Optional[str] = None
    status: Status = Status.OK
    reason: Optional[str] = None  # why a row is unavailable or failed (None for ok)
    # throughput: median of the rounds, its CI and spread
    images_per_s: Optional[float] = None
    images_per_s_ci_low: Optional[float] = None
    images_per_s_ci_high: Optional[float] = None
    images_per_s_ci_half_width_pct: Optional[float] = None
    images_per_s_cv_pct: Optional[float] = None
    ci_confidence: Optional[float] = None
    rounds: Optional[int] = None
    calls: Optional[int] = None
    noisy: Optional[bool] = None
    noisy_reason: Optional[str] = None
    stop_reason: Optional[str] = None
    rounds_s: Optional[float] = None
    round_images_per_s: Optional[List[float]] = None
    # latency of one call (one batch)
    latency_p50_ms: Optional[float] = None
    latency_p90_ms: Optional[float] = None
    latency_p99_ms: Optional[float] = None
    latency_mean_ms: Optional[float] = None
    latency_min_ms: Optional[float] = None
    warmup: Optional[int] = None
    # work and the device's ceiling
    gflops_per_image: Optional[float] = None
    gflops_per_s: Optional[float] = None
    peak_gflops_per_s: Optional[float] = None
    pct_of_peak: Optional[float] = None
    peak_kernel: Optional[str] = None
    ceiling_gflops_per_s: Optional[float] = None
    ceiling_source: Optional[str] = None
    # memory, size, load times, energy
    memory_idle_rss_bytes: Optional[int] = None
    memory_library_rss_bytes: Optional[int] = None
    memory_load_rss_bytes: Optional[int] = None
    memory_peak_rss_bytes: Optional[int] = None
    memory_peak_method: Optional[str] = None
    gpu_memory_used_bytes: Optional[int] = None
    gpu_memory_note: Optional[str] = None
    model_file_bytes: Optional[int] = None
    parameter_bytes: Optional[int] = None
    parameter_count: Optional[int] = None
    load_library_s: Optional[float] = None
    load_session_s: Optional[float] = None
    load_first_inference_s: Optional[float] = None
    load_second_inference_s: Optional[float] = None
    load_inference_batch_size: Optional[int] = None
    energy_j_per_image: Optional[float] = None
    energy_source: Optional[str] = None
    energy_reason: Optional[str] = None
    # accuracy and speed against the references
    top1_accuracy: Optional[float] = None
    accuracy_images: Optional[int] = None
    accuracy_delta_vs_mxnet_points: Optional[float] = None
    accuracy_reference: Optional[str] = None
    speedup_vs_mxnet_hybrid: Optional[float] = None
    speedup_ci_low: Optional[float] = None
    speedup_ci_high: Optional[float] = None
    speedup_pairs: Optional[int] = None
    speedup_clear: Optional[bool] = None
    variant_flagged: Optional[bool] = None
    variant_accuracy_drop_points: Optional[float] = None
    # the conditions it ran under
    threads: Optional[int] = None
    load_avg_before: Optional[float] = None
    load_avg_after: Optional[float] = None
    busy_warning: Optional[str] = None
    context: Optional[Dict[str, Any]] = None
    runtime: Optional[Dict[str, Any]] = None
    run_dir: Optional[str] = None
    # written only when set (OPTIONAL_ROW_KEYS)
    gpu_memory_idle_bytes: Optional[int] = None  # NVML before loading; gpu_memory_used_bytes is measured from it
    source: Optional[str] = None  # the results file a row was read from (compare --from)
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict)  # keys a newer writer added, kept as read

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in _ROW_FIELDS:
            raise AttributeError(f"Row has no field {name!r}")
        object.__setattr__(self, name, value)

    @property
    def ok(self) -> bool:
        """Whether the row measured what it names."""
        return self.status is Status.OK

    @property
    def status_text(self) -> str:
        """The JSON form of the status: ``ok`` or ``<status>: <reason>``."""
        return status_text(self.status, self.reason)

    def set_status(self, status: Status, reason: Optional[str] = None) -> None:
        """Mark the row ``status`` with ``reason`` (a failure while measuring: :attr:`Status.ERROR`)."""
        self.status, self.reason = status, reason

    def update(self, fields: Optional[Dict[str, Any]] = None, **more: Any) -> None:
        """Set several fields at once (each name must be a field)."""
        for name, value in dict(fields or {}, **more).items():
            setattr(self, name, value)

    def copy(self, **changes: Any) -> "Row":
        """A new row with the same fields (``extra`` copied too) and ``changes`` applied."""
        return dataclasses.replace(self, extra=dict(self.extra), **changes)

    def to_json(self) -> Dict[str, Any]:
        """The JSON object of the previous release's schema (see the class docstring)."""
        out = {key: getattr(self, key) for key in ROW_KEYS}
        out["status"] = self.status_text
        out.update({key: getattr(self, key) for key in OPTIONAL_ROW_KEYS if getattr(self, key) is not None})
        out.update((key, value) for key, value in self.extra.items() if key not in out)
        return out

    @classmethod
    def from_json(cls, values: Dict[str, Any]) -> "Row":
        """A row from its JSON object (missing keys: None; unknown keys kept in ``extra``). The
        field types are checked by the results reader first (:func:`load_results`)."""
        status, reason = parse_status(values.get("status"))
        known = {key: values.get(key) for key in _JSON_FIELDS}
        extra = {key: value for key, value in values.items() if key not in _ROW_FIELDS}
        return cls(status=status, reason=reason, extra=extra, **known)


_ROW_FIELDS = frozenset(field.name for field in dataclasses.fields(Row))
OPTIONAL_ROW_KEYS = ("gpu_memory_idle_bytes", "source")
ROW_KEYS = tuple(field.name for field in dataclasses.fields(Row)
                 if field.name not in ("reason", "extra") + OPTIONAL_ROW_KEYS)
"""The JSON keys every row has, in their order."""
_JSON_FIELDS = tuple(key for key in ROW_KEYS + OPTIONAL_ROW_KEYS if key != "status")


def status_text(status: Status, reason: Optional[str] = None) -> str:
    """The JSON form: ``ok``, or ``<status>: <reason>``."""
    return f"{status.value}: {reason}" if reason else status.value


def parse_status(text: Any) -> Tuple[Status, Optional[str]]:
    """``(Status, reason)`` from the JSON form (reason None for ``ok``). A status word this
    release does not know (a hand-edited file) counts as an error whose reason is the whole text."""
    text = str(text or "")
    word, colon, reason = text.partition(":")
    try:
        status = Status(word.strip())
    except ValueError:
        return Status.ERROR, f"unknown status {text!r}"
    return status, (reason.strip() or None) if colon else None
