"""CPU facts: model, flags, physical cores, and the theoretical FMA peak the vector units allow.
"""

from __future__ import annotations

import os
import platform
from typing import Any, Dict, Iterable, List, Optional

SYS_CPU_DIR = "/sys/devices/system/cpu"


def _cpuinfo_processors() -> List[Dict[str, str]]:
    """/proc/cpuinfo as one ``{key: value}`` dict per logical processor (empty off Linux)."""
    processors, current = [], {}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip():
                    current[key.strip()] = value.strip()
                elif current:
                    processors.append(current)
                    current = {}
    except OSError:
        pass
    if current:
        processors.append(current)
    return processors


def cpu_model() -> str:
    for processor in _cpuinfo_processors():
        if "model name" in processor:
            return processor["model name"]
    return platform.processor() or platform.machine()


def cpu_flags() -> list:
    """The SIMD features that decide CPU speed here (AVX-512 VNNI makes INT8 fast)."""
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8")
    for processor in _cpuinfo_processors():
        if "flags" in processor:
            present = set(processor["flags"].split())
            return [flag for flag in wanted if flag in present]
    return []


def cpu_flag_set() -> set:
    """Every flag of this CPU in /proc/cpuinfo (empty off Linux)."""
    return _all_cpu_flags(_cpuinfo_processors())


# CPU flags that give bfloat16 arithmetic units (AMX tiles, AVX-512 BF16 dot products).
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def bf16_unavailable_reason(flags: Optional[Iterable[str]] = None) -> Optional[str]:
    """Why this CPU has no bfloat16 units (None when ``flags`` has amx_bf16 or avx512_bf16).

    Parameters:
        flags: the CPU's flags; None reads this machine's /proc/cpuinfo.
    """
    flags = cpu_flag_set() if flags is None else set(flags)
    if any(flag in flags for flag in BF16_CPU_FLAGS):
        return None
    return ("this CPU has no bfloat16 units (no amx_bf16 or avx512_bf16 in /proc/cpuinfo): bf16 would be "
            "emulated, slower than fp32")


def physical_cores() -> int:
    """Physical CPU cores (distinct physical id/core id pairs in /proc/cpuinfo), else os.cpu_count()."""
    cores = {(p.get("physical id"), p["core id"]) for p in _cpuinfo_processors() if "core id" in p}
    return len(cores) or os.cpu_count() or 1


# --- theoretical peak: what the vector units could do at most --------------------------------------

def _all_cpu_flags(processors: List[Dict[str, str]]) -> set:
    for processor in processors:
        if "flags" in processor:
            return set(processor["flags"].split())
    return set()


def _vector_bits(flags: set) -> int:
    """The widest fp32 SIMD ISA the flags offer: AVX-512F 512, AVX 256, SSE 128, else 0."""
    if "avx512f" in flags:
        return 512
    if "avx" in flags:
        return 256
    return 128 if "sse" in flags or "sse2" in flags else 0


def fma_unit_defaults(vendor: str, family: int, model: int, flags: set) -> tuple:
    """``(fma_units_per_core, fma_datapath_bits, basis)`` by vendor and family: the assumption made.

    AMD (by ``cpu family``): 0x17 Zen/Zen+ (model < 0x30) 2 x 128-bit, Zen 2 2 x 256; 0x19 Zen 3/4
    2 x 256 (Zen 4 runs AVX-512 in two 256-bit halves); 0x1A Zen 5 2 x 512, except the mobile
    parts (models 0x20-0x2F, 0x60-0x6F) at 2 x 256. Intel: with AVX-512F 2 x 512 (Xeon Scalable
    Gold 6000 / Platinum and later; parts with one 512-bit unit get a peak twice too high, which
    keeps it a ceiling); with FMA (Haswell on) 2 x 256; AVX without FMA 1 x 256 (a multiply and an
    add pipe). Anything else: 2 units at the full ISA width -- an upper bound, said so in ``basis``.
    Without FMA, one "unit" is a multiply pipe plus an add pipe: still 2 flops per lane per cycle.
    """
    bits = _vector_bits(flags)
    if vendor == "AuthenticAMD":
        if family == 0x17:
            return (2, 128, "AMD Zen/Zen+: 2 FMA pipes x 128 bit") if model < 0x30 else \
                (2, 256, "AMD Zen 2: 2 FMA pipes x 256 bit")
        if family == 0x19:
            return 2, 256, "AMD Zen 3/Zen 4: 2 FMA pipes x 256 bit (AVX-512 as two halves)"
        if family == 0x1A:
            if 0x20 <= model <= 0x2F or 0x60 <= model <= 0x6F:
                return 2, 256, "AMD Zen 5 mobile: 2 FMA pipes x 256 bit"
            return 2, 512, "AMD Zen 5: 2 FMA pipes x 512 bit"
    if vendor == "GenuineIntel":
        if "avx512f" in flags:
            return 2, 512, "Intel AVX-512: 2 FMA units x 512 bit (1-unit parts reach half)"
        if "fma" in flags:
            return 2, 256, "Intel Haswell or later: 2 FMA units x 256 bit"
        if "avx" in flags:
            return 1, 256, "Intel AVX without FMA: 1 multiply + 1 add pipe x 256 bit"
    return 2, bits, f"unknown CPU: assumed 2 FMA units x {bits} bit (an upper bound)"


def _int8_paths(flags: set, fma_units: int, datapath_bits: int) -> Dict[str, int]:
    """int8 multiply-accumulates per cycle per core, by instruction path the flags allow.

    VNNI ``vpdpbusd``: one instruction does width/8 u8 x s8 products and adds them into int32
    lanes. Without VNNI, ``vpmaddubsw`` does width/8 products (pairwise summed into int16) but needs
    ``vpmaddwd`` on the same multiply pipes to widen them to int32: two multiply-pipe instructions per
    width/8 MACs. Per cycle: ``min(width, datapath)/8 x units / instructions``. AMX (Sapphire Rapids
    on): Intel's published 1024 int8 MACs per cycle per core.
    """
    def per_cycle(width: int, instructions: int) -> int:
        return min(width, datapath_bits) // 8 * fma_units // instructions

    paths = {}
    if "amx_int8" in flags:
        paths["amx_int8 (tdpbusd)"] = 1024
    if "avx512_vnni" in flags and "avx512bw" in flags:
        paths["avx512_vnni (vpdpbusd zmm)"] = per_cycle(512, 1)
    if "avx_vnni" in flags:
        paths["avx_vnni (vpdpbusd ymm)"] = per_cycle(256, 1)
    if "avx512bw" in flags:
        paths["avx512bw (vpmaddubsw+vpmaddwd zmm)"] = per_cycle(512, 2)
    if "avx2" in flags:
        paths["avx2 (vpmaddubsw+vpmaddwd ymm)"] = per_cycle(256, 2)
    if "ssse3" in flags:
        paths["ssse3 (pmaddubsw+pmaddwd xmm)"] = per_cycle(128, 2)
    return paths


def _peak_clock_mhz(sys_cpu_dir: str, processors: List[Dict[str, str]]) -> tuple:
    """``(clock_mhz, source, is_upper_bound)``: the driver's maximum clock, else the highest current one."""
    frequencies = cpu_frequencies_mhz(sys_cpu_dir, processors)
    if frequencies["hardware_max_mhz"]:
        return frequencies["hardware_max_mhz"], "cpufreq cpuinfo_max_freq (highest clock, boost included)", True
    if frequencies["source"]:
        return frequencies["current_mhz_max"], f"{frequencies['source']} (current clock; boost may exceed it)", False
    return None, "unreadable", False


def theoretical_fma_peak_gflops(threads: Optional[int] = None, *, clock_mhz: Optional[float] = None,
                                fma_units: Optional[int] = None, datapath_bits: Optional[int] = None,
                                processors: Optional[List[Dict[str, str]]] = None,
                                sys_cpu_dir: str = SYS_CPU_DIR) -> Dict[str, Any]:
    """The CPU's theoretical fp32 FMA peak and int8 peak, with every input, for a table footer.

    fp32: ``cores x lanes x fma_units x 2 flop x clock`` with ``lanes = min(ISA width, datapath)/32``
    (ISA from the flags: avx512f 512 bit, avx/avx2 256, sse 128). int8: ``cores x MACs per cycle x
    2 ops x clock`` on the fastest path the flags allow (:func:`_int8_paths`: e.g. AVX2 without VNNI
    is 32 products per ``vpmaddubsw`` but two multiply-pipe instructions per 32 MACs, so 32 MACs =
    64 ops per cycle with 2 units, twice fp32's 32 flops; VNNI makes it four times).

    Args:
        threads: threads the benchmark runs (None: all physical cores). SMT siblings share a core's
            vector units, so cores = min(threads, physical cores).
        clock_mhz: the clock to use; None reads cpufreq ``cpuinfo_max_freq`` (an upper bound), else
            the highest current clock (cpufreq ``scaling_cur_freq`` or /proc/cpuinfo ``cpu MHz``;
            ``clock_is_upper_bound`` is then False: boost can run faster, so a GEMM may beat it).
        fma_units: FMA units per core; None = :func:`fma_unit_defaults` by vendor and family.
        datapath_bits: width of each FMA unit; None = the same defaults.
        processors: parsed /proc/cpuinfo (vendor, family, model, flags, cores); None reads this machine's.
        sys_cpu_dir: the sysfs CPU directory for the clock.

    Returns ``available`` (False with ``reason`` where the vector ISA or the clock is unknown), and
    ``fp32_gflops``, ``int8_gops``, ``cores``, ``threads``, ``vector_bits``, ``datapath_bits``,
    ``fp32_lanes``, ``fma_units``, ``fma`` (bool), ``fp32_flops_per_cycle_per_core``, ``int8_path``,
    ``int8_macs_per_cycle_per_core``, ``int8_ops_per_cycle_per_core``, ``clock_mhz``,
    ``clock_source``, ``clock_is_upper_bound``, ``units_basis`` and ``fp32_formula``/``int8_formula``.
    """
    processors = _cpuinfo_processors() if processors is None else processors
    first = processors[0] if processors else {}
    flags = _all_cpu_flags(processors)
    vector_bits = _vector_bits(flags)
    if not vector_bits:
        return {"available": False, "reason": "no x86 SIMD flags (sse/avx) in /proc/cpuinfo: no model for this CPU"}
    cores_present = len({(p.get("physical id"), p["core id"]) for p in processors if "core id" in p}) \
        or len(processors) or os.cpu_count() or 1
    for name, value in (("threads", threads), ("fma_units", fma_units), ("datapath_bits", datapath_bits),
                        ("clock_mhz", clock_mhz)):
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")
    cores = min(threads or cores_present, cores_present)
    try:
        family, model = int(first.get("cpu family", "-1")), int(first.get("model", "-1"))
    except ValueError:
        family, model = -1, -1
    default_units, default_bits, basis = fma_unit_defaults(first.get("vendor_id", ""), family, model, flags)
    if fma_units is not None or datapath_bits is not None:
        basis = f"given: {fma_units or default_units} units x {datapath_bits or default_bits} bit"
    fma_units = fma_units or default_units
    datapath_bits = datapath_bits or default_bits
    if clock_mhz is not None:
        clock_source, clock_is_upper_bound = "given", True
    else:
        clock_mhz, clock_source, clock_is_upper_bound = _peak_clock_mhz(sys_cpu_dir, processors)
        if clock_mhz is None:
            return {"available": False, "reason": "CPU clock unreadable (no cpufreq, no cpu MHz); pass clock_mhz"}
    lanes = min(vector_bits, datapath_bits) // 32
    flops_per_cycle = lanes * fma_units * 2
    ghz = clock_mhz / 1000.0
    int8_paths = _int8_paths(flags, fma_units, datapath_bits)
    int8_path = max(int8_paths, key=int8_paths.get) if int8_paths else None
    int8_macs = int8_paths.get(int8_path, 0)
    result = {
        "available": True, "fp32_gflops": round(cores * flops_per_cycle * ghz, 3),
        "int8_gops": round(cores * int8_macs * 2 * ghz, 3) if int8_path else None,
        "cores": cores, "threads": threads, "vector_bits": vector_bits, "datapath_bits": datapath_bits,
        "fp32_lanes": lanes, "fma_units": fma_units, "fma": "fma" in flags or "avx512f" in flags,
        "fp32_flops_per_cycle_per_core": flops_per_cycle, "int8_path": int8_path,
        "int8_macs_per_cycle_per_core": int8_macs, "int8_ops_per_cycle_per_core": 2 * int8_macs,
        "clock_mhz": round(clock_mhz, 1), "clock_source": clock_source,
        "clock_is_upper_bound": clock_is_upper_bound, "units_basis": basis,
        "fp32_formula": (f"{cores} core(s) x {lanes} fp32 lanes x {fma_units} FMA units x 2 flop x "
                         f"{ghz:.3f} GHz"),
        "int8_formula": (f"{cores} core(s) x {int8_macs} int8 MACs/cycle ({int8_path}) x 2 ops x {ghz:.3f} GHz"
                         if int8_path else None),
    }
    return result




def _cpu_dirs(sys_cpu_dir: str) -> List[str]:
    """``<sys_cpu_dir>/cpuN`` directories, in N order (empty when unreadable)."""
    try:
        names = [name for name in os.listdir(sys_cpu_dir) if name.startswith("cpu") and name[3:].isdigit()]
    except OSError:
        return []
    return [os.path.join(sys_cpu_dir, name) for name in sorted(names, key=lambda name: int(name[3:]))]


def _read_number(path: str) -> Optional[float]:
    try:
        with open(path) as handle:
            return float(handle.read().strip())
    except (OSError, ValueError):
        return None


def cpu_frequencies_mhz(sys_cpu_dir: str = SYS_CPU_DIR,
                        processors: Optional[List[Dict[str, str]]] = None) -> Dict[str, Any]:
    """The CPUs' current clocks, summarised, and the highest clock the driver reports.

    Args:
        sys_cpu_dir: the sysfs CPU directory (``cpuN/cpufreq/scaling_cur_freq``, in kHz, is read first).
        processors: parsed /proc/cpuinfo (``cpu MHz`` is the fallback); ``None`` reads this machine's.

    Returns ``source`` (``"cpufreq scaling_cur_freq"``, ``"/proc/cpuinfo cpu MHz"`` or ``None`` when
    neither is readable), ``cpus`` (how many were read), ``current_mhz_min``/``_mean``/``_max``,
    ``hardware_max_mhz`` (``cpufreq/cpuinfo_max_freq``, the highest clock including boost where the
    driver reports it; ``None`` when unreadable, e.g. in most VMs).
    In a VM, /proc/cpuinfo's ``cpu MHz`` is usually the host's nominal (TSC) clock, not a live reading.
    """
    cpu_dirs = _cpu_dirs(sys_cpu_dir)
    current = [_read_number(os.path.join(d, "cpufreq", "scaling_cur_freq")) for d in cpu_dirs]
    current_mhz = [khz / 1000.0 for khz in current if khz]
    source: Optional[str] = "cpufreq scaling_cur_freq"
    if not current_mhz:
        processors = _cpuinfo_processors() if processors is None else processors
        current_mhz = [float(p["cpu MHz"]) for p in processors if p.get("cpu MHz", "").replace(".", "", 1).isdigit()]
        source = "/proc/cpuinfo cpu MHz" if current_mhz else None
    max_khz = [khz for khz in (_read_number(os.path.join(d, "cpufreq", "cpuinfo_max_freq")) for d in cpu_dirs)
               if khz]
    summary: Dict[str, Any] = {"source": source, "cpus": len(current_mhz),
                               "hardware_max_mhz": max(max_khz) / 1000.0 if max_khz else None}
    if current_mhz:
        summary.update(current_mhz_min=round(min(current_mhz), 1),
                       current_mhz_mean=round(sum(current_mhz) / len(current_mhz), 1),
                       current_mhz_max=round(max(current_mhz), 1))
    return summary


def _half_paths(flags: set, fp32_flops: int) -> Dict[str, Dict[str, int]]:
    """bf16 and fp16 flops per cycle per core, by the fastest instruction path the flags allow.

    AMX (``amx_bf16``, ``amx_fp16``): ``tdpbf16ps``/``tdpfp16ps`` do 16 x 16 x 32 multiply-adds per
    16 cycles, 512 MACs = 1024 flops per cycle per core (Intel's published rate). AVX-512
    ``vdpbf16ps``: two bf16 products per fp32 lane, twice the fp32 rate; AVX-512 FP16: 32 fp16
    lanes per 512 bits, also twice fp32. Without any of these the math runs in fp32 after a
    conversion: the fp32 rate.
    """
    bf16 = {"fp32 math after conversion": fp32_flops}
    fp16 = {"fp32 math after conversion (F16C)": fp32_flops}
    if "avx512_bf16" in flags:
        bf16["avx512_bf16 (vdpbf16ps zmm)"] = 2 * fp32_flops
    if "amx_bf16" in flags:
        bf16["amx_bf16 (tdpbf16ps)"] = 1024
    if "avx512_fp16" in flags:
        fp16["avx512_fp16 (vfmadd*ph zmm)"] = 2 * fp32_flops
    if "amx_fp16" in flags:
        fp16["amx_fp16 (tdpfp16ps)"] = 1024
    return {"bf16": bf16, "fp16": fp16}


def theoretical_peaks(threads: Optional[int] = None, **kwargs) -> Dict[str, Any]:
    """The CPU's theoretical peak per precision (fp32, bf16, fp16, int8) at the highest clock this
    machine shows, each with the formula that gives it: :func:`theoretical_fma_peak_gflops` plus
    bf16 and fp16 on the fastest path the flags allow (:func:`_half_paths`).

    Parameters:
        threads, kwargs: as :func:`theoretical_fma_peak_gflops`.

    Returns its dict plus ``precisions``: ``{precision: {"gflops_per_s", "formula", "path"}}``.
    """
    peak = theoretical_fma_peak_gflops(threads, **kwargs)
    if not peak.get("available"):
        return peak
    processors = kwargs.get("processors")
    flags = _all_cpu_flags(_cpuinfo_processors() if processors is None else processors)
    ghz = peak["clock_mhz"] / 1000.0
    cores = peak["cores"]
    precisions = {"fp32": {"gflops_per_s": peak["fp32_gflops"], "formula": peak["fp32_formula"],
                           "path": f"{peak['vector_bits']}-bit FMA"}}
    if peak.get("int8_gops"):
        precisions["int8"] = {"gflops_per_s": peak["int8_gops"], "formula": peak["int8_formula"],
                              "path": peak["int8_path"]}
    paths = _half_paths(flags, peak["fp32_flops_per_cycle_per_core"])
    for precision, options in paths.items():
        path = max(options, key=options.get)
        flops = options[path]
        precisions[precision] = {"gflops_per_s": round(cores * flops * ghz, 3), "path": path,
                                 "formula": f"{cores} core(s) x {flops} {precision} flop/cycle ({path}) x {ghz:.3f} GHz"}
    return dict(peak, precisions=precisions)
