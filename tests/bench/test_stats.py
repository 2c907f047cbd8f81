"""vggbench.bench.stats (intervals, paired speedups, convergence) and the measurement context in
vggbench.platform (load, clocks, throttling, theoretical peak).

The statistics are tested on synthetic rounds whose true median is known by construction: the
noise models are the ones a shared CPU box shows (Gaussian jitter, multiplicative log-normal noise,
and "contaminated" rounds where a neighbour steals 10-30% of some rounds), plus slow drift of the
machine's speed across rounds for the paired speedups.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest

from vggbench.bench import stats
from vggbench.platform import cpu, load

TRUE_MEDIAN = 100.0


def _rounds(rng: np.random.Generator, n: int, noise: str, scale: float = 0.03) -> np.ndarray:
    """n rounds' images/s whose population median is exactly TRUE_MEDIAN."""
    if noise == "normal":
        return TRUE_MEDIAN * (1.0 + scale * rng.standard_normal(n))
    if noise == "lognormal":
        return TRUE_MEDIAN * np.exp(scale * rng.standard_normal(n))
    raise AssertionError(noise)


class NoisySource:
    """A synthetic backend: each round's images/s is ``true * drift(round) * noise``, time per round fixed."""

    def __init__(self, images_per_s: float, noise: float, seed: int, round_s: float = 0.15):
        self.images_per_s, self.noise, self.round_s = images_per_s, noise, round_s
        self.rng = np.random.default_rng(seed)

    def round(self, drift: float = 1.0):
        return self.images_per_s * drift * math.exp(self.noise * self.rng.standard_normal()), self.round_s


# --- intervals ------------------------------------------------------------------------------------

@pytest.mark.parametrize("noise", ["normal", "lognormal"])
def test_median_ci_covers_the_true_median_in_about_95_percent_of_repeats(noise):
    rng = np.random.default_rng(11)
    repeats, covered, widths = 300, 0, []
    for _ in range(repeats):
        median, low, high = stats.bootstrap_median_ci(_rounds(rng, 10, noise), resamples=1000, rng=rng)
        assert low <= median <= high
        covered += low <= TRUE_MEDIAN <= high
        widths.append(high - low)
    assert covered / repeats >= 0.90, f"coverage {covered / repeats:.3f}"
    # Not trivially wide: with 3% noise and 10 rounds the interval is a few percent of the median.
    assert np.median(widths) < 0.1 * TRUE_MEDIAN


def test_median_ci_covers_the_true_median_with_contaminated_rounds():
    """Some rounds lose 10-30% to a neighbour: the median's interval still covers its true value."""
    rng = np.random.default_rng(5)
    population = TRUE_MEDIAN * (1 + 0.01 * rng.standard_normal(400_000))
    slow = rng.random(population.size) < 0.2
    population[slow] *= rng.uniform(0.7, 0.9, slow.sum())
    true_median = float(np.median(population))
    covered = 0
    for _ in range(300):
        sample = rng.choice(population, 12)
        _, low, high = stats.bootstrap_median_ci(sample, resamples=1000, rng=rng)
        covered += low <= true_median <= high
    assert covered / 300 >= 0.90


def test_median_ci_is_deterministic_for_a_seed_and_narrows_with_more_rounds():
    rng = np.random.default_rng(1)
    data = _rounds(rng, 40, "normal")
    assert stats.bootstrap_median_ci(data) == stats.bootstrap_median_ci(data)
    assert stats.bootstrap_median_ci(data, rng=np.random.default_rng(7)) == \
        stats.bootstrap_median_ci(data, rng=np.random.default_rng(7))
    _, low_10, high_10 = stats.bootstrap_median_ci(data[:10])
    _, low_40, high_40 = stats.bootstrap_median_ci(data)
    assert high_40 - low_40 < high_10 - low_10


def test_small_samples_give_no_interval_or_at_most_min_to_max():
    assert stats.bootstrap_median_ci([42.0])[0] == 42.0
    assert all(math.isnan(end) for end in stats.bootstrap_median_ci([42.0])[1:])
    median, low, high = stats.bootstrap_median_ci([10.0, 12.0, 11.0])
    assert (median, low >= 10.0, high <= 12.0) == (11.0, True, True)
    assert stats.bootstrap_median_ci([0.0, 0.0, 0.0]) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("bad, message", [
    ([], "empty"), ([1.0, float("nan"), 2.0], "non-finite"), ([1.0, float("inf")], "non-finite"),
    ([[1.0, 2.0]], "flat sequence"),
])
def test_bad_samples_are_a_clear_error(bad, message):
    with pytest.raises(ValueError, match=message):
        stats.bootstrap_median_ci(bad)


def test_bad_confidence_and_resamples_are_errors():
    with pytest.raises(ValueError, match="confidence"):
        stats.bootstrap_median_ci([1.0, 2.0], confidence=95)
    with pytest.raises(ValueError, match="resamples"):
        stats.bootstrap_median_ci([1.0, 2.0], resamples=10)


def test_coefficient_of_variation_on_known_data():
    assert stats.coefficient_of_variation([1.0, 2.0, 3.0, 4.0]) == pytest.approx(math.sqrt(5 / 3) / 2.5)
    assert stats.coefficient_of_variation([50.0, 50.0, 50.0]) == 0.0
    # Scale-free: the same relative spread at any speed.
    assert stats.coefficient_of_variation([10.0, 20.0, 30.0]) == \
        pytest.approx(stats.coefficient_of_variation([1000.0, 2000.0, 3000.0]))
    assert math.isnan(stats.coefficient_of_variation([5.0]))
    with pytest.raises(ValueError, match="mean is 0"):
        stats.coefficient_of_variation([0.0, 0.0])
    with pytest.raises(ValueError, match="non-finite"):
        stats.coefficient_of_variation([1.0, float("nan")])


def test_relative_half_width():
    assert stats.relative_half_width_pct(100.0, 98.0, 103.0) == pytest.approx(2.5)
    assert stats.relative_half_width_pct(100.0, math.nan, math.nan) is None
    assert stats.relative_half_width_pct(0.0, 0.0, 0.0) is None


# --- paired speedups ------------------------------------------------------------------------------

def test_paired_ratio_ci_contains_the_true_ratio_under_drift():
    """The machine's speed drifts +-20% across rounds; pairing cancels it, ratio-of-medians does not."""
    true_ratio, rng, covered = 1.3, np.random.default_rng(3), 0
    paired_widths, unpaired_widths = [], []
    for _ in range(200):
        drift = 1.0 + 0.2 * np.sin(np.linspace(0, 3, 12) + rng.uniform(0, 6))
        fast = 46.0 * true_ratio * drift * np.exp(0.01 * rng.standard_normal(12))
        base = 46.0 * drift * np.exp(0.01 * rng.standard_normal(12))
        ratio, low, high = stats.paired_ratio_ci(fast, base, resamples=1000, rng=rng)
        covered += low <= true_ratio <= high
        paired_widths.append(high - low)
        _, fast_low, fast_high = stats.bootstrap_median_ci(fast, resamples=1000, rng=rng)
        _, base_low, base_high = stats.bootstrap_median_ci(base, resamples=1000, rng=rng)
        unpaired_widths.append(fast_high / base_low - fast_low / base_high)
    assert covered / 200 >= 0.90
    assert np.median(paired_widths) < 0.25 * np.median(unpaired_widths)


def test_paired_ratio_errors():
    with pytest.raises(ValueError, match="differ in length"):
        stats.paired_ratio_ci([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="> 0"):
        stats.paired_ratio_ci([1.0, 2.0], [1.0, 0.0])


def test_speedup_of_two_identical_backends_is_no_clear_difference():
    a, b = NoisySource(46.0, 0.03, seed=1), NoisySource(46.0, 0.03, seed=2)
    same = stats.summarize_speedup([a.round()[0] for _ in range(12)], [b.round()[0] for _ in range(12)])
    assert same["speedup_ci_low"] <= 1.0 <= same["speedup_ci_high"]
    assert same["speedup_clear"] is False
    c = NoisySource(46.0 * 1.26, 0.03, seed=3)
    # One row got more rounds: only the first min(len) rounds are pairs.
    faster = stats.summarize_speedup([c.round()[0] for _ in range(15)], [b.round()[0] for _ in range(12)])
    assert faster["speedup_pairs"] == 12
    assert faster["speedup_clear"] is True and faster["speedup_ci_low"] > 1.1
    assert stats.clear_difference(0.9, 0.99) and not stats.clear_difference(math.nan, math.nan)


# --- result-row fields ----------------------------------------------------------------------------

def test_summarize_rounds_fields():
    rng = np.random.default_rng(4)
    rates = _rounds(rng, 20, "normal", scale=0.005)
    row = stats.summarize_rounds(rates, calls_per_round=[3] * 20)
    assert row["images_per_s"] == pytest.approx(float(np.median(rates)))
    assert row["images_per_s_ci_low"] <= row["images_per_s"] <= row["images_per_s_ci_high"]
    assert row["images_per_s_ci_half_width_pct"] == pytest.approx(
        100 * (row["images_per_s_ci_high"] - row["images_per_s_ci_low"]) / 2 / row["images_per_s"], abs=1e-3)
    assert row["images_per_s_cv_pct"] == pytest.approx(100 * np.std(rates, ddof=1) / np.mean(rates), abs=1e-3)
    assert (row["rounds"], row["calls"], row["noisy"], row["noisy_reason"]) == (20, 60, False, None)
    assert stats.summarize_rounds(rates, calls_per_round=2)["calls"] == 40

    wide = stats.summarize_rounds(_rounds(rng, 20, "normal", scale=0.2), calls_per_round=1)
    assert wide["noisy"] and "target" in wide["noisy_reason"]


def test_summarize_rounds_edge_cases():
    one = stats.summarize_rounds([47.0], calls_per_round=5)
    assert (one["images_per_s"], one["images_per_s_ci_low"], one["images_per_s_cv_pct"]) == (47.0, None, None)
    assert one["noisy"] and "only 1 round" in one["noisy_reason"]
    five = stats.summarize_rounds([47.0, 47.1, 46.9, 47.0, 47.05], calls_per_round=1)
    assert five["noisy"] and "at least 6" in five["noisy_reason"]
    with pytest.raises(ValueError, match="> 0"):
        stats.summarize_rounds([0.0, 0.0, 0.0], calls_per_round=1)
    with pytest.raises(ValueError, match="non-finite"):
        stats.summarize_rounds([47.0, float("nan")], calls_per_round=1)
    with pytest.raises(ValueError, match="entries for"):
        stats.summarize_rounds([47.0, 48.0], calls_per_round=[1])
    with pytest.raises(ValueError, match="at least one call"):
        stats.summarize_rounds([47.0, 48.0], calls_per_round=0)


# --- convergence ----------------------------------------------------------------------------------

def _run(controller: stats.Convergence, source: NoisySource) -> stats.Convergence:
    while not controller.done:
        rate, seconds = source.round()
        controller.add(rate, round_s=seconds, calls=2)
    return controller


def test_convergence_stops_early_when_noise_is_low():
    controller = _run(stats.Convergence.from_policy(stats.CPU_ROUNDS), NoisySource(47.0, 0.005, seed=0))
    assert controller.converged and controller.stop_reason == stats.STOP_CONVERGED
    assert controller.rounds == stats.CPU_ROUNDS.min_rounds
    row = controller.summary()
    assert row["noisy"] is False and row["images_per_s_ci_half_width_pct"] <= 2.0
    assert row["calls"] == 2 * controller.rounds and row["stop_reason"] == "converged"
    assert controller.reason.startswith("converged")


def test_convergence_keeps_adding_rounds_for_moderate_noise_then_converges():
    controller = _run(stats.Convergence(max_seconds=None), NoisySource(47.0, 0.06, seed=1))
    assert controller.converged
    assert stats.CPU_ROUNDS.min_rounds < controller.rounds < stats.CPU_ROUNDS.max_rounds


def test_intervals_still_cover_after_stopping_at_convergence():
    """Optional stopping (stop at the first round under the target) must not make the interval lie:
    with 3% round noise, the final interval covers the true median in ~90% of rows (400-row
    simulations give 0.90; 150 rows here have a standard error of ~2.5 points)."""
    covered, repeats = 0, 150
    for seed in range(repeats):
        source = NoisySource(TRUE_MEDIAN, 0.03, seed=100 + seed)
        controller = _run(stats.Convergence(max_seconds=None, resamples=500), source)
        _, low, high = controller.interval()
        covered += low <= TRUE_MEDIAN <= high
    assert covered / repeats >= 0.85, covered / repeats


def test_a_noisy_source_is_marked_noisy_after_the_time_budget():
    controller = _run(stats.Convergence.from_policy(stats.CPU_ROUNDS), NoisySource(47.0, 0.25, seed=2))
    assert not controller.converged and controller.stop_reason == stats.STOP_MAX_SECONDS
    assert controller.elapsed_s >= stats.CPU_ROUNDS.max_seconds
    assert controller.elapsed_s < stats.CPU_ROUNDS.max_seconds + 0.15 + 1e-9  # stops at the first round over
    row = controller.summary()
    assert row["noisy"] is True and "budget" in row["noisy_reason"] and row["stop_reason"] == "max_seconds"


def test_time_budget_never_cuts_a_row_below_min_rounds():
    controller = _run(stats.Convergence(max_seconds=1.0), NoisySource(2.0, 0.25, seed=3, round_s=5.0))
    assert controller.rounds == stats.DEFAULT_MIN_ROUNDS and controller.stop_reason == stats.STOP_MAX_SECONDS


def test_max_rounds_caps_a_row():
    controller = _run(stats.Convergence(min_rounds=10, max_rounds=14, max_seconds=None),
                      NoisySource(47.0, 0.3, seed=4))
    assert controller.rounds == 14 and controller.stop_reason == stats.STOP_MAX_ROUNDS
    assert controller.summary()["noisy"] is True


def test_fixed_rounds_run_exactly_n_and_still_judge_noise():
    fixed = _run(stats.Convergence.from_policy(stats.CPU_ROUNDS, rounds=15), NoisySource(47.0, 0.001, seed=5))
    assert fixed.rounds == 15 and fixed.converged  # no early stop at 10 although the CI was tight
    few = _run(stats.Convergence.from_policy(stats.CPU_ROUNDS, rounds=3), NoisySource(47.0, 0.001, seed=5))
    assert few.rounds == 3 and not few.converged and "at least 6 rounds" in few.reason


def test_interleaved_controllers_each_stop_on_their_own():
    """The scheduler shape: one controller per row, rounds A B A B until every row is done."""
    quiet, loud = NoisySource(47.0, 0.005, seed=6), NoisySource(36.0, 0.2, seed=7)
    rows = {"ort-cpu": (stats.Convergence.from_policy(stats.CPU_ROUNDS), quiet),
            "mxnet-hybrid": (stats.Convergence.from_policy(stats.CPU_ROUNDS), loud)}
    order = []
    while not all(controller.done for controller, _ in rows.values()):
        for name, (controller, source) in rows.items():
            if not controller.done:
                rate, seconds = source.round()
                controller.add(rate, round_s=seconds)
                order.append(name)
    assert order[:4] == ["ort-cpu", "mxnet-hybrid", "ort-cpu", "mxnet-hybrid"]
    assert rows["ort-cpu"][0].summary()["noisy"] is False
    assert rows["mxnet-hybrid"][0].summary()["noisy"] is True
    assert rows["mxnet-hybrid"][0].rounds > rows["ort-cpu"][0].rounds


def test_convergence_overrides_and_argument_errors():
    gpu = stats.Convergence.from_policy(stats.round_policy("gpu"), target_ci_pct=1.0, max_seconds=9.0)
    assert (gpu.target_ci_pct, gpu.max_seconds, gpu.max_rounds) == (1.0, 9.0, stats.GPU_ROUNDS.max_rounds)
    assert stats.round_policy("cpu").round_min_s > 0 and stats.round_policy("gpu").round_min_calls >= 1
    with pytest.raises(ValueError, match="no round policy"):
        stats.round_policy("tpu")
    with pytest.raises(ValueError, match="target_ci_pct"):
        stats.Convergence(target_ci_pct=0)
    with pytest.raises(ValueError, match="max_rounds"):
        stats.Convergence(min_rounds=6, max_rounds=3)
    with pytest.raises(ValueError, match="rounds must be"):
        stats.Convergence.from_policy(stats.CPU_ROUNDS, rounds=0)
    controller = stats.Convergence()
    assert controller.ci_half_width_pct is None and controller.reason.startswith("running")
    with pytest.raises(ValueError, match="non-finite"):
        controller.add(float("nan"), 0.1)
    with pytest.raises(ValueError, match="> 0"):
        controller.add(0.0, 0.1)
    with pytest.raises(ValueError, match="round_s"):
        controller.add(47.0, -1.0)
    assert controller.rounds == 0


# --- context: load, clocks, throttling, busy ------------------------------------------------------

def _fake_sysfs(root, cpus):
    """cpuN/{cpufreq,thermal_throttle,topology} files under ``root`` from {n: {relative path: value}}."""
    for n, files in cpus.items():
        for relative, value in files.items():
            path = root / f"cpu{n}" / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{value}\n")
    (root / "cpufreq").mkdir(exist_ok=True)  # a non-cpuN entry, as in the real directory
    return str(root)


def test_load_average_reads_the_real_machine():
    average = load.load_average()
    assert set(average) == {"load_1min", "load_5min", "load_15min"}
    assert all(value >= 0 for value in average.values())


def test_cpu_frequencies_from_sysfs_and_from_cpuinfo(tmp_path):
    sys_dir = _fake_sysfs(tmp_path, {
        0: {"cpufreq/scaling_cur_freq": 3_000_000, "cpufreq/cpuinfo_max_freq": 4_000_000},
        1: {"cpufreq/scaling_cur_freq": 2_000_000, "cpufreq/cpuinfo_max_freq": 4_000_000},
        10: {"cpufreq/scaling_cur_freq": 2_500_000}})
    frequencies = cpu.cpu_frequencies_mhz(sys_dir, processors=[])
    assert frequencies == {"source": "cpufreq scaling_cur_freq", "cpus": 3, "hardware_max_mhz": 4000.0,
                           "current_mhz_min": 2000.0, "current_mhz_mean": 2500.0, "current_mhz_max": 3000.0}
    fallback = cpu.cpu_frequencies_mhz(str(tmp_path / "absent"),
                                               processors=[{"cpu MHz": "2596.094"}, {"cpu MHz": "2400.0"}])
    assert (fallback["source"], fallback["current_mhz_max"], fallback["hardware_max_mhz"]) == \
        ("/proc/cpuinfo cpu MHz", 2596.1, None)
    assert cpu.cpu_frequencies_mhz(str(tmp_path / "absent"), processors=[])["source"] is None


def test_throttling_hints_count_packages_once(tmp_path):
    def cpu(core, package, package_id):
        return {"thermal_throttle/core_throttle_count": core,
                "thermal_throttle/package_throttle_count": package, "topology/physical_package_id": package_id}

    sys_dir = _fake_sysfs(tmp_path, {0: cpu(2, 7, 0), 1: cpu(3, 7, 0), 2: cpu(0, 1, 1)})
    before = load.throttling_hints(sys_dir)
    assert before == {"core_throttle_count": 5, "package_throttle_count": 8}
    assert load.throttled_between(before, before) is None
    warning = load.throttled_between(before, {"core_throttle_count": 9, "package_throttle_count": 8})
    assert "4 core_throttle event(s)" in warning
    assert load.throttling_hints(str(tmp_path / "absent")) == {}


def test_cpu_times_and_usage_between(tmp_path):
    hz = os.sysconf("SC_CLK_TCK")
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 50 800 20 0 10 20 0 0\ncpu0 1 2 3\n")
    before = load.cpu_times(str(stat))
    assert before == pytest.approx({"busy_s": 160 / hz, "idle_s": 820 / hz, "steal_s": 20 / hz})
    stat.write_text("cpu  200 0 100 850 20 0 10 70 0 0\n")
    after = load.cpu_times(str(stat))
    # 150 busy, 50 idle, 50 steal ticks: of 250, busy 60%, steal 20%; the benchmark used 100 ticks.
    usage = load.cpu_usage_between(before, after, own_cpu_s=100 / hz)
    assert usage == {"busy_pct": 60.0, "other_busy_pct": 20.0, "steal_pct": 20.0}
    assert load.cpu_times(str(tmp_path / "absent")) is None
    real = load.cpu_times()
    assert real is not None and real["busy_s"] + real["idle_s"] > 0


def test_process_cpu_time_of_this_process_grows():
    before = load.process_cpu_s(os.getpid())
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    assert load.process_cpu_s(os.getpid()) > before
    assert load.process_cpu_s(2 ** 22 + 12345) is None


def test_machine_busy_rules():
    quiet = {"load_1min": 0.3, "load_5min": 0.2, "load_15min": 0.1}
    busy = {"load_1min": 1.6, "load_5min": 1.0, "load_15min": 0.5}
    assert load.machine_busy(quiet, cores=2) is None
    warning = load.machine_busy(busy, cores=2)
    assert warning.startswith("machine busy") and "1.60" in warning and "\n" not in warning
    assert load.machine_busy(busy, cores=4) is None
    assert load.machine_busy(busy, cores=2, own_load=1.0) is None  # the benchmark's own lagging load
    assert "steal" in load.machine_busy(None, 2, usage={"other_busy_pct": 1.0, "steal_pct": 12.0})
    assert "other processes used 40%" in load.machine_busy(quiet, 2, usage={"other_busy_pct": 40.0,
                                                                                   "steal_pct": 0.0})
    with pytest.raises(ValueError, match="cores"):
        load.machine_busy(quiet, cores=0)


# --- theoretical peak -----------------------------------------------------------------------------

def _processors(vendor, family, model, flags, cores, threads_per_core=1, mhz="3000.000"):
    return [{"vendor_id": vendor, "cpu family": str(family), "model": str(model), "flags": flags,
             "physical id": "0", "core id": str(core), "cpu MHz": mhz}
            for core in range(cores) for _ in range(threads_per_core)]


ZEN3_FLAGS = "fpu sse sse2 ssse3 sse4_1 sse4_2 fma avx avx2"
SKYLAKE_SP_FLAGS = "sse sse2 ssse3 fma avx avx2 avx512f avx512bw avx512_vnni"
ZEN4_FLAGS = "sse sse2 ssse3 fma avx avx2 avx512f avx512bw avx512_vnni"


def test_theoretical_peak_zen3_avx2(tmp_path):
    """Zen 3, 2 cores, 3.0 GHz: fp32 2 x 8 lanes x 2 FMA x 2 = 64 flop/cycle -> 192 GFLOP/s;
    int8 without VNNI: 32 MACs/cycle/core -> 2 x 32 x 2 x 3.0 = 384 GOP/s (twice fp32)."""
    peak = cpu.theoretical_fma_peak_gflops(
        processors=_processors("AuthenticAMD", 25, 1, ZEN3_FLAGS, cores=2, threads_per_core=2),
        sys_cpu_dir=str(tmp_path))
    assert peak["available"] and peak["cores"] == 2  # 4 SMT threads on 2 cores: 2 cores' FMA units
    assert (peak["fp32_lanes"], peak["fma_units"], peak["fp32_flops_per_cycle_per_core"]) == (8, 2, 32)
    assert peak["fp32_gflops"] == pytest.approx(192.0)
    assert peak["int8_path"].startswith("avx2") and peak["int8_ops_per_cycle_per_core"] == 64
    assert peak["int8_gops"] == pytest.approx(384.0)
    assert (peak["clock_mhz"], peak["clock_is_upper_bound"]) == (3000.0, False)
    assert peak["clock_source"].startswith("/proc/cpuinfo cpu MHz")
    assert peak["fp32_formula"] == "2 core(s) x 8 fp32 lanes x 2 FMA units x 2 flop x 3.000 GHz"


def test_theoretical_peak_intel_avx512_vnni_with_sysfs_max_clock(tmp_path):
    """4 Xeon cores at a 2.0 GHz max clock: fp32 4 x 16 x 2 x 2 x 2.0 = 512 GFLOP/s; VNNI int8 4x that."""
    sys_dir = _fake_sysfs(tmp_path, {n: {"cpufreq/cpuinfo_max_freq": 2_000_000,
                                         "cpufreq/scaling_cur_freq": 1_200_000} for n in range(4)})
    peak = cpu.theoretical_fma_peak_gflops(
        processors=_processors("GenuineIntel", 6, 85, SKYLAKE_SP_FLAGS, cores=4), sys_cpu_dir=sys_dir)
    assert peak["fp32_gflops"] == pytest.approx(512.0)
    assert peak["int8_path"].startswith("avx512_vnni") and peak["int8_macs_per_cycle_per_core"] == 128
    assert peak["int8_gops"] == pytest.approx(4 * 512.0)
    assert (peak["clock_mhz"], peak["clock_is_upper_bound"]) == (2000.0, True)
    assert peak["clock_source"].startswith("cpufreq cpuinfo_max_freq")


def test_theoretical_peak_zen4_runs_avx512_on_256_bit_pipes_and_threads_limit_cores(tmp_path):
    peak = cpu.theoretical_fma_peak_gflops(
        threads=3, clock_mhz=2500.0,
        processors=_processors("AuthenticAMD", 25, 17, ZEN4_FLAGS, cores=8), sys_cpu_dir=str(tmp_path))
    assert (peak["vector_bits"], peak["datapath_bits"], peak["fp32_lanes"]) == (512, 256, 8)
    assert peak["cores"] == 3 and peak["threads"] == 3
    assert peak["fp32_gflops"] == pytest.approx(3 * 8 * 2 * 2 * 2.5)
    # zmm VNNI on 256-bit pipes: 32 MACs per unit per cycle, as ymm VNNI would be.
    assert peak["int8_macs_per_cycle_per_core"] == 64
    assert peak["int8_gops"] == pytest.approx(3 * 64 * 2 * 2.5)
    assert (peak["clock_source"], peak["clock_is_upper_bound"]) == ("given", True)


def test_theoretical_peak_overrides_and_unknown_cpus(tmp_path):
    one_unit = cpu.theoretical_fma_peak_gflops(
        clock_mhz=2000.0, fma_units=1,
        processors=_processors("GenuineIntel", 6, 85, SKYLAKE_SP_FLAGS, cores=2), sys_cpu_dir=str(tmp_path))
    assert one_unit["fp32_gflops"] == pytest.approx(2 * 16 * 1 * 2 * 2.0)
    assert one_unit["units_basis"].startswith("given")
    sse_only = cpu.theoretical_fma_peak_gflops(
        clock_mhz=1000.0, processors=_processors("GenuineIntel", 6, 15, "sse sse2 ssse3", cores=1),
        sys_cpu_dir=str(tmp_path))
    assert (sse_only["fp32_lanes"], sse_only["fma"], sse_only["int8_path"][:5]) == (4, False, "ssse3")
    assert "upper bound" in sse_only["units_basis"]
    arm = cpu.theoretical_fma_peak_gflops(processors=[{"Features": "fp asimd"}], sys_cpu_dir=str(tmp_path))
    assert arm["available"] is False and "no x86 SIMD" in arm["reason"]
    no_clock = cpu.theoretical_fma_peak_gflops(
        processors=_processors("AuthenticAMD", 25, 1, ZEN3_FLAGS, cores=2, mhz="unknown"),
        sys_cpu_dir=str(tmp_path))
    assert no_clock["available"] is False and "clock" in no_clock["reason"]
    with pytest.raises(ValueError, match="threads"):
        cpu.theoretical_fma_peak_gflops(threads=0)


def test_theoretical_peak_is_above_a_real_gemm_on_this_machine():
    """At a clock that is an upper bound (max boost), the theoretical peak is a ceiling: numpy's
    fp32 GEMM (all cores) never reaches it. A nominal clock is not one (the core boosts past it):
    there the ceiling is the measured GEMM (tests/bench/test_ceilings.py)."""
    peak = cpu.theoretical_fma_peak_gflops()
    if not peak["available"]:
        pytest.skip(peak["reason"])
    if not peak["clock_is_upper_bound"]:
        pytest.skip(f"the clock here is not an upper bound ({peak['clock_source']})")
    a = np.random.default_rng(0).standard_normal((768, 768)).astype(np.float32)
    a @ a
    best_s = min(_timed(lambda: a @ a) for _ in range(5))
    measured_gflops = 2 * 768 ** 3 / best_s / 1e9
    assert measured_gflops < peak["fp32_gflops"], (measured_gflops, peak)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_round_settings_resolve_per_device_and_describe_themselves():
    default = stats.RoundSettings()
    assert default.policy("cpu") == stats.CPU_ROUNDS and default.policy("gpu") == stats.GPU_ROUNDS
    fixed = stats.RoundSettings(warmup=1, rounds=3, iters=2, round_s=0.05)
    cpu_policy = fixed.policy("cpu")
    assert (cpu_policy.min_rounds, cpu_policy.max_rounds, cpu_policy.max_seconds) == (3, 3, None)
    assert cpu_policy.round_min_s == 0.05 and fixed.policy("gpu").round_min_calls == stats.GPU_ROUNDS.round_min_calls
    budget = stats.RoundSettings(target_ci_pct=1.0, max_seconds=9.0).policy("gpu")
    assert (budget.target_ci_pct, budget.max_seconds, budget.max_rounds) == (1.0, 9.0, stats.GPU_ROUNDS.max_rounds)
    control = stats.Convergence.from_policy(cpu_policy)
    assert (control.min_rounds, control.max_rounds, control.max_seconds) == (3, 3, None)
    record = fixed.to_dict()
    assert list(record) == ["warmup", "rounds", "iters", "target_ci_pct", "max_seconds", "round_s", "description"]
    assert "exactly 3 round(s) per row" in record["description"] and "2 call(s)" in record["description"]
    assert "+-2% (at least 10 rounds" in default.description


@pytest.mark.parametrize("kwargs, message", [
    (dict(warmup=-1), "--warmup must be >= 0"), (dict(warmup=0), "--warmup 0 needs --iters"),
    (dict(rounds=0), "--rounds must be >= 1"), (dict(iters=0), "--iters must be >= 1"),
    (dict(round_s=float("inf")), "--round-seconds"), (dict(target_ci_pct=0.0), "--target-ci")])
def test_round_settings_refuse_bad_values(kwargs, message):
    from vggbench.errors import VggbenchError

    with pytest.raises(VggbenchError, match=message):
        stats.RoundSettings(**kwargs)
