"""Resident memory, energy counters and per-precision theoretical peaks of this machine."""

from __future__ import annotations

import os

import numpy as np
import pytest

from vggbench.platform import cpu, resources

LINUX = pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc (Linux)")


@LINUX
def test_peak_rss_sees_a_real_allocation_and_resets_to_the_current_rss():
    before = resources.rss_bytes()
    block = np.ones(64 << 20, dtype=np.uint8)  # 64 MiB, touched
    assert resources.peak_rss_bytes() >= before + (60 << 20)
    del block
    if not resources.reset_peak_rss():
        pytest.skip("this kernel does not allow resetting VmHWM")
    assert resources.peak_rss_bytes() < before + (32 << 20)  # the 64 MiB peak is forgotten


def _zone(root, name, energy_uj, range_uj):
    zone = root / name
    zone.mkdir()
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{range_uj}\n")
    return zone


def test_rapl_energy_sums_packages_skips_subzones_and_handles_wraparound(tmp_path):
    package0 = _zone(tmp_path, "intel-rapl:0", 999_000_000, 1_000_000_000)
    package1 = _zone(tmp_path, "intel-rapl:1", 5_000_000, 1_000_000_000)
    _zone(tmp_path, "intel-rapl:0:0", 1, 1_000_000_000)  # a core subzone: inside package 0 already
    assert resources.rapl_reason(str(tmp_path)) is None
    before = resources.rapl_read(str(tmp_path))
    (package0 / "energy_uj").write_text("2000000\n")  # wrapped: 1,000 J range, +3 J
    (package1 / "energy_uj").write_text("7500000\n")  # +2.5 J
    after = resources.rapl_read(str(tmp_path))
    assert len(before) == 2
    assert resources.rapl_joules_between(before, after) == pytest.approx(3.000001 + 2.5)


def test_rapl_reasons_say_why_not(tmp_path):
    assert "absent" in resources.rapl_reason(str(tmp_path / "none"))
    assert "no intel-rapl package zone" in resources.rapl_reason(str(tmp_path))
    if os.geteuid() != 0:
        zone = _zone(tmp_path, "intel-rapl:0", 1, 10)
        (zone / "energy_uj").chmod(0)
        assert "not readable" in resources.rapl_reason(str(tmp_path))


def test_energy_counter_of_this_machine_reads_or_says_why():
    read, reason = resources.energy_counter("cpu")
    assert (read is None) == bool(reason)
    if read is not None:
        first = read()
        assert resources.energy_between("cpu", first, read()) >= 0


SAPPHIRE_RAPIDS = ("sse sse2 ssse3 fma avx avx2 avx512f avx512bw avx512_vnni avx512_bf16 avx512_fp16 "
                   "amx_bf16 amx_int8 amx_tile")


def _processors(flags, cores=2, mhz="2600.000"):
    return [{"vendor_id": "GenuineIntel", "cpu family": "6", "model": "143", "flags": flags,
             "physical id": "0", "core id": str(core), "cpu MHz": mhz} for core in range(cores)]


def test_theoretical_peaks_per_precision_follow_the_fastest_unit(tmp_path):
    """2 AMX cores at 2.6 GHz: fp32 2 x 64 flop x 2.6 = 332.8; AMX bf16 2 x 1024 x 2.6 = 5324.8;
    AVX-512 FP16 (no AMX-FP16) twice fp32; int8 AMX 2 x 1024 MACs x 2 x 2.6."""
    peaks = cpu.theoretical_peaks(processors=_processors(SAPPHIRE_RAPIDS), sys_cpu_dir=str(tmp_path))
    table = peaks["precisions"]
    assert table["fp32"]["gflops_per_s"] == pytest.approx(332.8)
    assert table["bf16"]["gflops_per_s"] == pytest.approx(5324.8) and table["bf16"]["path"].startswith("amx_bf16")
    assert table["fp16"]["gflops_per_s"] == pytest.approx(665.6) and "avx512_fp16" in table["fp16"]["path"]
    assert table["int8"]["gflops_per_s"] == pytest.approx(10649.6)
    assert all("2.600 GHz" in entry["formula"] for entry in table.values())
    older = cpu.theoretical_peaks(processors=_processors("sse sse2 fma avx avx2"), sys_cpu_dir=str(tmp_path))
    assert older["precisions"]["bf16"]["gflops_per_s"] == older["precisions"]["fp32"]["gflops_per_s"]
    assert older["precisions"]["bf16"]["path"] == "fp32 math after conversion"


def test_gpu_theoretical_peaks_match_published_dense_figures():
    """H100 SXM: 132 SMs at 1.83 GHz -> 989 TFLOP/s fp16 dense, 494 tf32; A100: 108 SMs, 1.41 GHz -> 312 fp16."""
    from vggbench.platform.gpu_peaks import gpu_theoretical_peaks, this_gpu_peaks

    h100 = gpu_theoretical_peaks((9, 0), 132, 1830.0, device="gpu:0")["precisions"]
    assert h100["fp16"]["gflops_per_s"] == pytest.approx(989_400, rel=0.01)
    assert h100["tf32"]["gflops_per_s"] == pytest.approx(494_700, rel=0.01)
    a100 = gpu_theoretical_peaks((8, 0), 108, 1410.0)["precisions"]
    assert a100["fp16"]["gflops_per_s"] == pytest.approx(312_000, rel=0.01)
    assert "unverified" in a100["fp32"]["formula"]
    assert gpu_theoretical_peaks((6, 1), 28, 1500.0)["available"] is False
    here = this_gpu_peaks(0)
    assert here["available"] or here["reason"]


def test_a_gpu_ceiling_comes_from_its_theoretical_peak_when_above_the_gemm():
    from vggbench.bench.ceilings import apply_ceilings
    from vggbench.bench.row import Row
    from vggbench.platform.gpu_peaks import gpu_theoretical_peaks

    rows = [Row(model="vgg11", input_size=224, width_ratio=1.0, backend="ort-cuda", device="gpu:0", precision="fp16",
                gflops_per_s=300_000.0, peak_gflops_per_s=700_000.0, peak_kernel="MatMul float16 8192x8192")]
    table = apply_ceilings(rows, environment={"gpu_theoretical_peak": gpu_theoretical_peaks((9, 0), 132, 1980.0)})
    assert table[0]["kind"] == "theoretical" and rows[0].ceiling_gflops_per_s == pytest.approx(132 * 4096 * 1.98)
    assert 0 < rows[0].pct_of_peak <= 100
