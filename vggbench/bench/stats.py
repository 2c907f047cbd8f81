"""Numbers you can trust: medians over rounds, their confidence intervals, paired speedups, convergence.

Vocabulary. A *call* is one timed, synced ``run(batch)``. A *round* is a short burst of calls of one
row (a row = one backend, precision, batch size and mode) that yields one ``images_per_s`` figure. A
sweep keeps every backend's worker alive and times rounds interleaved (A B A B ...), so a drift in
machine speed lands on every backend alike, and round *i* of A and round *i* of B form a *pair*.

What a row reports (:func:`summarize_rounds`): the median of its rounds' images/s, the 95%
percentile-bootstrap interval of that median, the interval's half-width as a percentage of the
median, the coefficient of variation of the rounds, the number of rounds and calls, and ``noisy``
when the half-width is above the target (or there were too few rounds for an interval). A speedup
(:func:`paired_ratio_ci`) is the median of the per-pair ratios with its own bootstrap interval over
pairs; :func:`clear_difference` says whether that interval excludes 1.00.

How many rounds a row gets (:class:`Convergence`): at least ``min_rounds``; then rounds are added
until the interval's half-width is under ``target_ci_pct``, or the row's own time budget
(``max_seconds``) or ``max_rounds`` runs out -- those rows end ``noisy``. :data:`CPU_ROUNDS` and
:data:`GPU_ROUNDS` hold the defaults and the reasoning behind them.

Everything here is pure and numpy-only: the randomness of the bootstrap comes from a
``numpy.random.Generator`` passed in (``rng=None`` means a fresh generator seeded with
:data:`DEFAULT_SEED`, so the same samples always give the same interval). Bad samples (empty, NaN,
infinite, mismatched pairs) are caller bugs and raise ``ValueError`` with one line saying what and why.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

DEFAULT_CONFIDENCE = 0.95
# 2000 resamples: the percentile endpoints at 2.5%/97.5% then rest on 50 resamples each, so their
# Monte-Carlo wobble is well under the spread of the data; one interval over 50 rounds costs ~2 ms.
DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0
DEFAULT_TARGET_CI_PCT = 2.0
# The fewest rounds for which any interval for a median can reach 95% without assuming a
# distribution: [min, max] of n rounds misses the true median with probability 2 * 0.5**n, which is
# 6.25% for n = 5 and 3.1% for n = 6. With fewer rounds a row is always ``noisy``.
MIN_ROUNDS_FOR_CI = 6
# Rounds before convergence is first judged. Stopping at the first round whose interval is under
# the target picks a lucky moment (optional stopping) and makes the interval optimistic; in
# simulation (log-normal round noise, 2% target, 400 rows each), the final interval covered the
# true median 89%/86% of the time at 2%/3% round noise when judged from 6 rounds, and 92%/90% when
# judged from 10 (tests/bench/test_stats.py checks the latter); at a fixed count of 10 rounds it is 92-95%.
DEFAULT_MIN_ROUNDS = 10

Samples = Union[Sequence[float], np.ndarray]


@dataclasses.dataclass(frozen=True)
class RoundPolicy:
    """How long a round is and how many a row gets, by default, on one kind of device.

    Attributes:
        device: ``"cpu"`` or ``"gpu"``.
        round_min_s: a round runs calls until at least this many seconds have passed ...
        round_min_calls: ... and at least this many calls.
        min_rounds: rounds every row gets before convergence is judged (and before the time budget
            can stop it).
        max_rounds: hard cap on rounds per row (a safety net for very fast rows).
        max_seconds: time budget per row: the sum of this row's own round times, not counting the
            other rows' rounds interleaved with it (adding backends does not shrink it).
        target_ci_pct: a row is converged when the half-width of the 95% interval of its median is at
            most this percentage of the median.
    """

    device: str
    round_min_s: float
    round_min_calls: int
    min_rounds: int = DEFAULT_MIN_ROUNDS
    max_rounds: int = 100
    max_seconds: Optional[float] = 4.0
    target_ci_pct: float = DEFAULT_TARGET_CI_PCT


CPU_ROUNDS = RoundPolicy(device="cpu", round_min_s=0.1, round_min_calls=1, max_seconds=2.0)
"""CPU defaults: rounds of >= 0.1 s and >= 1 call, 10 to 100 rounds, 2 s budget per row, 2% target.

Why: on a small shared CPU machine, what moves a figure is the neighbours (other tenants' bursts of
tens of ms, the scheduler's few-ms slices) and slow drift over seconds (clock, cache, load). A round
of 0.1 s averages several such bursts, yet is short enough that backends alternate several times
per second, faster than the drift, so the drift cancels in paired ratios. At least one call: a
full-width batch-64 row (>= 1 s per call here) is then one call per round rather than forced into
longer rounds. Ten rounds (:data:`DEFAULT_MIN_ROUNDS`) take about 1 s for a fast row on a quiet
machine -- twice the old single 0.5 s loop. With ~3% noise per round, the median's interval
reaches +-2% after ~10-20 rounds; the 2 s budget bounds a noisy row and marks it ``noisy``.
2 s is where repeat runs agreed within their intervals at an affordable sweep time (the measured
trade-off is in docs/methodology.md); ``--max-seconds`` trades either way.
"""

GPU_ROUNDS = RoundPolicy(device="gpu", round_min_s=0.1, round_min_calls=10, max_seconds=3.0)
"""GPU defaults: rounds of >= 0.1 s and >= 10 calls, 10 to 100 rounds, 3 s budget per row, 2% target.

Why: a GPU call on these models takes ~1-10 ms, and each carries launch and sync jitter of tens of
microseconds; ten or more calls per round (and 0.1 s) average that out. The GPU's own drift -- boost
clock settling under power and thermal limits in the first seconds of load -- is slower than a
round, so interleaving spreads it across backends; the warm-up before the first round should cover
the first seconds. GPU figures are steadier than a shared CPU's, so a shorter budget suffices.
"""

ROUND_POLICIES = {"cpu": CPU_ROUNDS, "gpu": GPU_ROUNDS}


def round_policy(device: str) -> RoundPolicy:
    """The default :class:`RoundPolicy` for ``device`` (``"cpu"`` or ``"gpu"``)."""
    try:
        return ROUND_POLICIES[device]
    except KeyError:
        raise ValueError(f"no round policy for device {device!r}; expected one of {sorted(ROUND_POLICIES)}") \
            from None


DEFAULT_WARMUP = 2


@dataclasses.dataclass(frozen=True)
class RoundSettings:
    """What a sweep was asked for about rounds (``--warmup``, ``--rounds``, ``--iters``, ``--target-ci``,
    ``--max-seconds``, ``--round-seconds``); None means the device kind's :class:`RoundPolicy` default.
    Validates itself (a one-line :class:`~vggbench.errors.VggbenchError` naming the flag) and resolves
    into the :class:`RoundPolicy` one device kind runs with (:meth:`policy`).

    Attributes:
        warmup: untimed calls per row before its first round; they size the rounds, so 0 needs ``iters``.
        rounds: a fixed number of rounds per row (no convergence), or None.
        iters: a fixed number of calls per round, or None (sized to ``round_s``).
        target_ci_pct: stop when every row's 95% CI half-width is under this % of its median.
        max_seconds: per-row budget of its own round time.
        round_s: round length in seconds.
    """

    warmup: int = DEFAULT_WARMUP
    rounds: Optional[int] = None
    iters: Optional[int] = None
    target_ci_pct: Optional[float] = None
    max_seconds: Optional[float] = None
    round_s: Optional[float] = None

    def __post_init__(self) -> None:
        from vggbench.errors import VggbenchError

        if self.warmup < 0:
            raise VggbenchError(f"--warmup must be >= 0, got {self.warmup}")
        if self.warmup == 0 and not self.iters:
            raise VggbenchError("--warmup 0 needs --iters N: the warm-up calls size the rounds")
        for name, value in (("--rounds", self.rounds), ("--iters", self.iters)):
            if value is not None and value < 1:
                raise VggbenchError(f"{name} must be >= 1, got {value}")
        for name, value in (("--target-ci", self.target_ci_pct), ("--max-seconds", self.max_seconds),
                            ("--round-seconds", self.round_s)):
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise VggbenchError(f"{name} must be a positive number, got {value}")

    def policy(self, device: str) -> RoundPolicy:
        """The :class:`RoundPolicy` rows on ``device`` (``"cpu"`` or ``"gpu"``) run with: its defaults
        with these settings applied (``rounds`` fixes the count and drops the default time budget)."""
        default = round_policy(device)
        policy = dataclasses.replace(
            default, round_min_s=self.round_s or default.round_min_s,
            target_ci_pct=default.target_ci_pct if self.target_ci_pct is None else self.target_ci_pct,
            max_seconds=default.max_seconds if self.max_seconds is None else self.max_seconds)
        if self.rounds is not None:
            policy = dataclasses.replace(policy, min_rounds=self.rounds, max_rounds=self.rounds,
                                         max_seconds=self.max_seconds)
        return policy

    @property
    def description(self) -> str:
        """The policy in words, for the results' settings and the report."""
        cpu, gpu = CPU_ROUNDS, GPU_ROUNDS
        if self.iters:
            calls = f"{self.iters} call(s)"
        else:
            calls = (f"calls filling >= {self.round_s or cpu.round_min_s:g} s (GPU: >= "
                     f"{self.round_s or gpu.round_min_s:g} s and {gpu.round_min_calls} calls)")
        target = self.target_ci_pct or cpu.target_ci_pct
        if self.rounds:
            stop = f"exactly {self.rounds} round(s) per row"
        else:
            stop = (f"rounds until every row's 95% CI of the median is within +-{target:g}% (at least "
                    f"{cpu.min_rounds} rounds; at most {self.max_seconds or cpu.max_seconds:g} s of a row's own "
                    f"rounds (GPU {self.max_seconds or gpu.max_seconds:g} s), else it is marked noisy)")
        return (f"{self.warmup} warm-up call(s) per row, then interleaved rounds of {calls}, one round per "
                f"backend in turn; {stop}")

    def to_dict(self) -> Dict[str, Any]:
        """The settings as the results JSON records them (``settings.policy``), with the description."""
        return dict(dataclasses.asdict(self), description=self.description)


# --- checks -----------------------------------------------------------------------------------------

def _as_samples(samples: Samples, what: str = "samples") -> np.ndarray:
    """``samples`` as a 1-D float array; ValueError when empty, not 1-D, or not all finite."""
    array = np.asarray(samples, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{what} must be a flat sequence of numbers, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{what} is empty: at least one round is needed")
    bad = ~np.isfinite(array)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{what} holds a non-finite value ({array[index]!r} at index {index}); "
                         "a timing that produced it is broken")
    return array


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence!r}")


def _generator(rng: Optional[np.random.Generator]) -> np.random.Generator:
    return np.random.default_rng(DEFAULT_SEED) if rng is None else rng


# --- intervals ------------------------------------------------------------------------------------

def bootstrap_median_ci(samples: Samples, confidence: float = DEFAULT_CONFIDENCE,
                        resamples: int = DEFAULT_RESAMPLES,
                        rng: Optional[np.random.Generator] = None) -> Tuple[float, float, float]:
    """The median of ``samples`` and its percentile-bootstrap confidence interval.

    Resamples the rounds with replacement ``resamples`` times, takes each resample's median, and
    returns ``(median, low, high)`` with ``low``/``high`` the ``(1-confidence)/2`` and
    ``(1+confidence)/2`` quantiles of those medians.

    Args:
        samples: one figure per round (e.g. images/s); finite numbers.
        confidence: the interval's nominal coverage, 0 < confidence < 1.
        resamples: bootstrap resamples (>= 100).
        rng: the random generator; ``None`` = seeded with :data:`DEFAULT_SEED` (deterministic).

    Small n: the bootstrap medians can only take the sample values (and midpoints), so the interval
    never reaches beyond ``[min, max]``, and ``[min, max]`` of n values misses the true median with
    probability ``2 * 0.5**n``: for n = 2, 3, 4, 5 the interval is at best a 50%, 75%, 87.5%,
    93.75% interval whatever ``confidence`` says. One sample gives ``(x, nan, nan)`` (no interval).
    From :data:`MIN_ROUNDS_FOR_CI` (6) rounds on, a nominal 95% interval covers the true median
    in about 91-96% of repeats on normal, log-normal and contaminated ("some slow rounds") noise at
    n = 6 to 40 (measured in simulation; tests/bench/test_stats.py checks >= 90%): the percentile
    bootstrap of a median runs slightly short of its nominal level at small n.

    Raises:
        ValueError: empty or non-finite samples, a bad confidence or too few resamples.
    """
    values = _as_samples(samples)
    _check_confidence(confidence)
    if resamples < 100:
        raise ValueError(f"resamples must be >= 100 for a percentile interval, got {resamples}")
    median = float(np.median(values))
    if values.size == 1:
        return median, math.nan, math.nan
    indices = _generator(rng).integers(0, values.size, size=(resamples, values.size))
    medians = np.median(values[indices], axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(medians, [tail, 1.0 - tail])
    return median, float(low), float(high)


def coefficient_of_variation(samples: Samples) -> float:
    """Sample standard deviation (n-1) over the mean, as a fraction (0.03 = 3%).

    Args:
        samples: one figure per round; finite numbers.

    Returns ``nan`` for a single sample (no spread can be estimated from one round).

    Raises:
        ValueError: empty or non-finite samples, or a mean of 0 (the ratio is undefined).
    """
    values = _as_samples(samples)
    if values.size == 1:
        return math.nan
    mean = float(values.mean())
    if mean == 0.0:
        raise ValueError("coefficient of variation is undefined for samples whose mean is 0")
    return float(values.std(ddof=1) / abs(mean))


def relative_half_width_pct(median: float, low: float, high: float) -> Optional[float]:
    """Half the interval's width as a percentage of the median; ``None`` when it is undefined.

    Undefined: no interval (``nan`` ends, e.g. one round) or a median of 0.
    """
    if math.isnan(low) or math.isnan(high) or median == 0.0:
        return None
    return 100.0 * (high - low) / 2.0 / abs(median)


def paired_ratio_ci(numerator_rounds: Samples, denominator_rounds: Samples,
                    confidence: float = DEFAULT_CONFIDENCE, resamples: int = DEFAULT_RESAMPLES,
                    rng: Optional[np.random.Generator] = None) -> Tuple[float, float, float]:
    """A speedup from paired rounds: the median per-pair ratio and its bootstrap interval over pairs.

    Pair *i* is round *i* of each row, timed back to back in the same cycle of an interleaved sweep,
    so a slow moment of the machine slows both and cancels in ``numerator[i] / denominator[i]``.

    Args:
        numerator_rounds: the faster-is-bigger figure of the row being compared (e.g. ort-cpu img/s).
        denominator_rounds: the baseline's figure in the same rounds (e.g. mxnet-hybrid img/s).
        confidence, resamples, rng: as in :func:`bootstrap_median_ci` (same small-n behaviour).

    Returns ``(ratio, low, high)``.

    Raises:
        ValueError: different lengths, empty or non-finite rounds, or a denominator <= 0.
    """
    numerator = _as_samples(numerator_rounds, "numerator_rounds")
    denominator = _as_samples(denominator_rounds, "denominator_rounds")
    if numerator.size != denominator.size:
        raise ValueError(f"paired rounds differ in length ({numerator.size} vs {denominator.size}); "
                         "pass round i of each row as pair i")
    if (denominator <= 0).any():
        raise ValueError("denominator_rounds must all be > 0 to form ratios")
    return bootstrap_median_ci(numerator / denominator, confidence, resamples, rng)


def clear_difference(ci_low: float, ci_high: float, null_value: float = 1.0) -> bool:
    """Whether an interval excludes ``null_value`` (1.00 for a speedup): False means "no clear difference".

    An undefined interval (``nan``/``None`` ends) is never a clear difference.
    """
    if ci_low is None or ci_high is None or math.isnan(ci_low) or math.isnan(ci_high):
        return False
    return not ci_low <= null_value <= ci_high


# --- result-row fields ----------------------------------------------------------------------------

def _calls_total(calls_per_round: Union[int, Sequence[int]], rounds: int) -> int:
    if isinstance(calls_per_round, (int, np.integer)):
        per_round = [int(calls_per_round)] * rounds
    else:
        per_round = [int(calls) for calls in calls_per_round]
        if len(per_round) != rounds:
            raise ValueError(f"calls_per_round has {len(per_round)} entries for {rounds} rounds")
    if any(calls < 1 for calls in per_round):
        raise ValueError("every round needs at least one call")
    return sum(per_round)


def _rounded(value: Optional[float], digits: int) -> Optional[float]:
    return None if value is None or math.isnan(value) else round(float(value), digits)


def summarize_rounds(round_images_per_s: Samples, calls_per_round: Union[int, Sequence[int]],
                     target_ci_pct: float = DEFAULT_TARGET_CI_PCT, confidence: float = DEFAULT_CONFIDENCE,
                     resamples: int = DEFAULT_RESAMPLES, rng: Optional[np.random.Generator] = None,
                     min_rounds: int = MIN_ROUNDS_FOR_CI) -> Dict[str, Any]:
    """The statistics fields of a result row, from its rounds.

    Args:
        round_images_per_s: each round's images/s (batch size x calls / round wall time); all > 0.
        calls_per_round: calls in each round (one int for all, or one per round).
        target_ci_pct: the half-width (in % of the median) at or under which the row is not noisy.
        confidence, resamples, rng: as in :func:`bootstrap_median_ci`.
        min_rounds: fewer rounds than this make the row noisy whatever its interval.

    Returns a dict (JSON-ready; undefined values are ``None``):
        ``images_per_s`` (median over rounds), ``images_per_s_ci_low``, ``images_per_s_ci_high``,
        ``images_per_s_ci_half_width_pct``, ``images_per_s_cv_pct`` (coefficient of variation of
        the rounds, %), ``ci_confidence`` (0.95), ``rounds``, ``calls``, ``noisy`` (bool) and
        ``noisy_reason`` (one line, or ``None``).

    Raises:
        ValueError: empty, non-finite or non-positive rates, or calls that do not match the rounds.
    """
    rates = _as_samples(round_images_per_s, "round_images_per_s")
    if (rates <= 0).any():
        raise ValueError("round_images_per_s must all be > 0: a round that processed no images was not timed")
    calls = _calls_total(calls_per_round, rates.size)
    median, low, high = bootstrap_median_ci(rates, confidence, resamples, rng)
    half_width_pct = relative_half_width_pct(median, low, high)
    cv = coefficient_of_variation(rates)
    noisy_reason = _noisy_reason(rates.size, min_rounds, half_width_pct, target_ci_pct)
    return {
        "images_per_s": median,
        "images_per_s_ci_low": _rounded(low, 6),
        "images_per_s_ci_high": _rounded(high, 6),
        "images_per_s_ci_half_width_pct": _rounded(half_width_pct, 3),
        "images_per_s_cv_pct": _rounded(100.0 * cv, 3),
        "ci_confidence": confidence,
        "rounds": int(rates.size),
        "calls": calls,
        "noisy": noisy_reason is not None,
        "noisy_reason": noisy_reason,
    }


def _noisy_reason(rounds: int, min_rounds: int, half_width_pct: Optional[float],
                  target_ci_pct: float) -> Optional[str]:
    if rounds < min_rounds:
        return f"only {rounds} round(s); a 95% interval needs at least {min_rounds}"
    if half_width_pct is None:
        return "no confidence interval could be computed"
    if half_width_pct > target_ci_pct:
        return f"95% interval +-{half_width_pct:.1f}% of the median, above the {target_ci_pct:g}% target"
    return None


def summarize_speedup(numerator_rounds: Samples, denominator_rounds: Samples,
                      confidence: float = DEFAULT_CONFIDENCE, resamples: int = DEFAULT_RESAMPLES,
                      rng: Optional[np.random.Generator] = None) -> Dict[str, Any]:
    """The speedup fields of a result row from paired rounds (see :func:`paired_ratio_ci`).

    Returns ``speedup`` (median per-pair ratio), ``speedup_ci_low``, ``speedup_ci_high``,
    ``speedup_pairs`` (pairs used) and ``speedup_clear`` (False: the interval includes 1.00, "no
    clear difference"). Pairs are the first ``min(len)`` rounds of each row when one row got more
    rounds than the other (round i of each was timed in the same cycle).
    """
    pairs = min(len(numerator_rounds), len(denominator_rounds))
    ratio, low, high = paired_ratio_ci(list(numerator_rounds)[:pairs], list(denominator_rounds)[:pairs],
                                       confidence, resamples, rng)
    return {"speedup": ratio, "speedup_ci_low": _rounded(low, 6), "speedup_ci_high": _rounded(high, 6),
            "speedup_pairs": pairs, "speedup_clear": clear_difference(low, high)}


# --- convergence ----------------------------------------------------------------------------------

STOP_RUNNING = "running"
STOP_CONVERGED = "converged"
STOP_MAX_SECONDS = "max_seconds"
STOP_MAX_ROUNDS = "max_rounds"


class Convergence:
    """Decides, round by round, whether one row has enough rounds. Keep one per (backend, row).

    An interleaved scheduler does::

        controllers = {key: Convergence.from_policy(round_policy(device)) for key in rows}
        while not all(c.done for c in controllers.values()):
            for key, c in controllers.items():          # A B A B ... (one round each per cycle)
                if not c.done:
                    rate, calls, seconds = run_one_round(key)
                    c.add(rate, round_s=seconds, calls=calls)
        for key, c in controllers.items():
            rows[key].update(c.summary())

    (To keep speedup pairs aligned, a scheduler may instead keep timing every row of a group until
    the whole group is done: ``add`` is accepted after ``done``.)

    Rule: the row is *done* when it is *converged* -- at least ``min_rounds`` rounds and the 95%
    interval's half-width at most ``target_ci_pct`` % of the median -- or, once it has
    ``min_rounds``, when its own round time reaches ``max_seconds``, or at ``max_rounds``. A row
    that stopped without converging is ``noisy``. ``min_rounds == max_rounds == N`` is a fixed
    count (``--rounds N``): no early stop, and ``noisy`` still says whether the target was met (always
    noisy below :data:`MIN_ROUNDS_FOR_CI` rounds: no 95% interval exists there).
    ``max_seconds`` never cuts a row below ``min_rounds`` (every row carries an interval), so
    a row whose single call is longer than ``max_seconds / min_rounds`` overruns the budget.

    The interval is recomputed after each round with a generator seeded by ``seed`` (the same
    rounds always give the same decision). Stopping at the first round under the target makes
    the interval slightly optimistic (optional stopping); ``min_rounds`` limits that (see
    :data:`DEFAULT_MIN_ROUNDS`).

    Args:
        target_ci_pct: half-width target, % of the median (> 0).
        min_rounds: rounds before the target or the budget are judged (>= 1).
        max_rounds: cap on rounds (>= min_rounds), or None for no cap.
        max_seconds: budget of this row's own round time in seconds (> 0), or None for none.
        confidence, resamples: as in :func:`bootstrap_median_ci`.
        seed: seed of the bootstrap generator.
    """

    def __init__(self, target_ci_pct: float = DEFAULT_TARGET_CI_PCT, min_rounds: int = DEFAULT_MIN_ROUNDS,
                 max_rounds: Optional[int] = CPU_ROUNDS.max_rounds,
                 max_seconds: Optional[float] = CPU_ROUNDS.max_seconds,
                 confidence: float = DEFAULT_CONFIDENCE, resamples: int = DEFAULT_RESAMPLES,
                 seed: int = DEFAULT_SEED):
        if not target_ci_pct > 0:
            raise ValueError(f"target_ci_pct must be > 0 (a percentage such as 2.0), got {target_ci_pct!r}")
        if min_rounds < 1:
            raise ValueError(f"min_rounds must be >= 1, got {min_rounds}")
        if max_rounds is not None and max_rounds < min_rounds:
            raise ValueError(f"max_rounds ({max_rounds}) must be >= min_rounds ({min_rounds})")
        if max_seconds is not None and not max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0, got {max_seconds!r}")
        _check_confidence(confidence)
        self.target_ci_pct = float(target_ci_pct)
        self.min_rounds = int(min_rounds)
        self.max_rounds = max_rounds
        self.max_seconds = max_seconds
        self.confidence = confidence
        self.resamples = resamples
        self.seed = seed
        self._rates: List[float] = []
        self._calls: List[int] = []
        self.elapsed_s = 0.0
        self._interval: Optional[Tuple[float, float, float]] = None

    @classmethod
    def from_policy(cls, policy: RoundPolicy, rounds: Optional[int] = None,
                    target_ci_pct: Optional[float] = None, max_seconds: Optional[float] = None,
                    seed: int = DEFAULT_SEED) -> "Convergence":
        """A controller with ``policy``'s defaults and the CLI's overrides.

        Args:
            policy: :data:`CPU_ROUNDS`, :data:`GPU_ROUNDS` or your own.
            rounds: ``--rounds N``: exactly N rounds (no early stop, no time budget unless
                ``max_seconds`` is also given).
            target_ci_pct: ``--target-ci P``.
            max_seconds: ``--max-seconds S``.
            seed: seed of the bootstrap generator.
        """
        target = policy.target_ci_pct if target_ci_pct is None else target_ci_pct
        if rounds is not None:
            if rounds < 1:
                raise ValueError(f"rounds must be >= 1, got {rounds}")
            return cls(target, min_rounds=rounds, max_rounds=rounds, max_seconds=max_seconds, seed=seed)
        return cls(target, min_rounds=policy.min_rounds, max_rounds=policy.max_rounds,
                   max_seconds=policy.max_seconds if max_seconds is None else max_seconds, seed=seed)

    def add(self, images_per_s: float, round_s: float = 0.0, calls: int = 1) -> None:
        """Record one round: its images/s, its wall time in seconds (counts against ``max_seconds``)
        and its number of calls."""
        rate = _as_samples([images_per_s], "images_per_s")[0]
        if rate <= 0:
            raise ValueError(f"images_per_s must be > 0, got {images_per_s!r}")
        if not round_s >= 0 or math.isinf(round_s):
            raise ValueError(f"round_s must be a finite duration >= 0 seconds, got {round_s!r}")
        if calls < 1:
            raise ValueError(f"a round needs at least one call, got {calls}")
        self._rates.append(float(rate))
        self._calls.append(int(calls))
        self.elapsed_s += float(round_s)
        self._interval = None

    @property
    def samples(self) -> Tuple[float, ...]:
        """The rounds' images/s so far, in order."""
        return tuple(self._rates)

    @property
    def rounds(self) -> int:
        return len(self._rates)

    def interval(self) -> Tuple[float, float, float]:
        """``(median, low, high)`` of the rounds so far (:func:`bootstrap_median_ci`)."""
        if self._interval is None:
            self._interval = bootstrap_median_ci(self._rates, self.confidence, self.resamples,
                                                 np.random.default_rng(self.seed))
        return self._interval

    @property
    def ci_half_width_pct(self) -> Optional[float]:
        """Half-width of the current interval, % of the median; None before two rounds."""
        if self.rounds == 0:
            return None
        return relative_half_width_pct(*self.interval())

    @property
    def converged(self) -> bool:
        """At least ``min_rounds`` (and :data:`MIN_ROUNDS_FOR_CI`) rounds, half-width at or under the target."""
        if self.rounds < max(self.min_rounds, MIN_ROUNDS_FOR_CI):
            return False
        width = self.ci_half_width_pct
        return width is not None and width <= self.target_ci_pct

    @property
    def stop_reason(self) -> str:
        """``"converged"``, ``"max_seconds"``, ``"max_rounds"`` or ``"running"`` (not done yet)."""
        if self.converged:
            return STOP_CONVERGED
        if self.max_rounds is not None and self.rounds >= self.max_rounds:
            return STOP_MAX_ROUNDS
        if self.max_seconds is not None and self.rounds >= self.min_rounds and self.elapsed_s >= self.max_seconds:
            return STOP_MAX_SECONDS
        return STOP_RUNNING

    @property
    def done(self) -> bool:
        """No more rounds are needed (converged, or out of budget or rounds)."""
        return self.stop_reason != STOP_RUNNING

    @property
    def reason(self) -> str:
        """The state in one line, e.g. ``converged: +-1.3% <= 2% after 9 rounds (1.4 s)``."""
        width = self.ci_half_width_pct
        width_text = "no interval yet" if width is None else f"+-{width:.1f}%"
        after = f"after {self.rounds} round(s) ({self.elapsed_s:.1f} s)"
        stop = self.stop_reason
        if stop == STOP_CONVERGED:
            return f"converged: {width_text} <= {self.target_ci_pct:g}% {after}"
        if stop == STOP_MAX_ROUNDS:
            if self.rounds < MIN_ROUNDS_FOR_CI:
                return (f"stopped at the {self.max_rounds}-round limit: a 95% interval needs at least "
                        f"{MIN_ROUNDS_FOR_CI} rounds")
            return f"stopped at the {self.max_rounds}-round limit: {width_text} vs the {self.target_ci_pct:g}% target"
        if stop == STOP_MAX_SECONDS:
            return (f"stopped at the {self.max_seconds:g} s budget: {width_text} vs the "
                    f"{self.target_ci_pct:g}% target {after}")
        return f"running: {width_text} {after}"

    def summary(self) -> Dict[str, Any]:
        """The row's statistics fields (:func:`summarize_rounds`) plus ``stop_reason`` and ``rounds_s``.

        ``noisy`` is ``not converged``, with ``noisy_reason`` = :attr:`reason` when noisy.
        """
        fields = summarize_rounds(self._rates, self._calls, self.target_ci_pct, self.confidence,
                                  self.resamples, np.random.default_rng(self.seed))
        fields["noisy"] = not self.converged
        fields["noisy_reason"] = None if self.converged else self.reason
        fields["stop_reason"] = self.stop_reason
        fields["rounds_s"] = round(self.elapsed_s, 6)
        return fields
