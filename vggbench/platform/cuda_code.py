"""Which GPUs a CUDA library has kernels for, read from its ``.nv_fatbin`` section (no cuobjdump).

A CUDA build embeds, per kernel, machine code (SASS, "cubin") for some architectures and maybe PTX
(an intermediate form the driver compiles on first use). This module reads the ELF section
headers and the fat binary entry headers only (the payloads stay compressed and unread), so a
400 MB provider library is summarized in about a second, and decides from that summary whether a
GPU of a given compute capability can run it: SASS ``sm_XY`` runs on compute capability X.Z for
Z >= Y; ``sm_90a``-style architecture-specific SASS runs on exactly 9.0; PTX ``compute_XY`` is
compiled by the driver for any X.Y or newer (slowly, on first use; the driver caches the result).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

FATBIN_MAGIC = 0xBA55ED50
FATBIN_SECTION = ".nv_fatbin"
ENTRY_PTX, ENTRY_ELF = 1, 2
# Set in the flags of the entries cuobjdump lists as sm_90a (architecture-specific code that runs
# on that one architecture only); absent on the plain sm_XY and compute_XY entries.
FLAG_ARCH_SPECIFIC = 0x100000
_FATBIN_HEADER = struct.Struct("<IHHQ")  # magic, version, header size, size of the entries
_ENTRY_HEADER = struct.Struct("<HHIQ")  # kind, version, header size, payload size (padded)
_ENTRY_ARCH = struct.Struct("<I")  # at offset 28
_ENTRY_FLAGS = struct.Struct("<Q")  # at offset 40
_MAX_SECTION_HEADERS = 65536
_MAX_ENTRIES = 10_000_000


class NotACudaLibrary(ValueError):
    """The file is not an ELF shared library or holds no readable fat binary."""


@dataclass(frozen=True)
class CudaCode:
    """The GPU code a library holds: SASS and PTX architectures, as cuobjdump names them."""

    sass: Tuple[str, ...] = ()  # ("sm_60", ..., "sm_90a")
    ptx: Tuple[str, ...] = ()  # ("compute_90",)
    containers: int = 0
    entries: int = 0
    unknown_kinds: Dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> Dict[str, Any]:
        return {"sass": list(self.sass), "ptx": list(self.ptx)}


def _label(prefix: str, arch: int, flags: int) -> str:
    return f"{prefix}_{arch}" + ("a" if flags & FLAG_ARCH_SPECIFIC else "")


def _architecture_key(label: str) -> Tuple[int, str]:
    digits = label.split("_", 1)[1]
    return int(digits.rstrip("af")), digits


def _fatbin_section(handle) -> Tuple[int, int]:
    """(offset, size) of the ``.nv_fatbin`` section of the open ELF64 little-endian file."""
    header = handle.read(64)
    if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
        raise NotACudaLibrary("not a 64-bit little-endian ELF file")
    (section_offset,) = struct.unpack_from("<Q", header, 0x28)
    entry_size, count, names_index = struct.unpack_from("<HHH", header, 0x3A)
    if not 0 < count <= _MAX_SECTION_HEADERS or entry_size < 64 or names_index >= count:
        raise NotACudaLibrary("unreadable ELF section table")
    handle.seek(section_offset)
    table = handle.read(entry_size * count)
    sections = [struct.unpack_from("<IIQQQQ", table, index * entry_size) for index in range(count)]
    names_at, names_size = sections[names_index][4], sections[names_index][5]
    handle.seek(names_at)
    names = handle.read(min(names_size, 1 << 24))
    wanted = FATBIN_SECTION.encode() + b"\0"
    for name_at, _kind, _flags, _address, offset, size in sections:
        if names[name_at:name_at + len(wanted)] == wanted:
            return offset, size
    raise NotACudaLibrary(f"no {FATBIN_SECTION} section (no GPU code)")


def read_cuda_code(path: Any) -> CudaCode:
    """The SASS and PTX architectures in the shared library at ``path``.

    Reads the fat binary containers one after the other (each: a 16-byte header, then entries of
    ``header size + payload size`` bytes); between containers it skips 8-byte-aligned padding
    until the next magic number. Raises :class:`NotACudaLibrary` for a file without GPU code.
    """
    sass, ptx, unknown = set(), set(), {}
    containers = entries = 0
    with open(path, "rb") as handle:
        start, size = _fatbin_section(handle)
        end, at = start + size, start
        while at + _FATBIN_HEADER.size <= end:
            handle.seek(at)
            magic, _version, header_size, body_size = _FATBIN_HEADER.unpack(handle.read(_FATBIN_HEADER.size))
            if magic != FATBIN_MAGIC:
                at += 8
                continue
            containers += 1
            entry, container_end = at + header_size, min(at + header_size + body_size, end)
            while entry + 64 <= container_end and entries < _MAX_ENTRIES:
                handle.seek(entry)
                raw = handle.read(48)
                kind, _version, entry_header_size, payload_size = _ENTRY_HEADER.unpack_from(raw)
                if entry_header_size < 64:
                    break
                (arch,) = _ENTRY_ARCH.unpack_from(raw, 28)
                (flags,) = _ENTRY_FLAGS.unpack_from(raw, 40)
                entries += 1
                if kind == ENTRY_ELF:
                    sass.add(_label("sm", arch, flags))
                elif kind == ENTRY_PTX:
                    ptx.add(_label("compute", arch, flags))
                else:
                    unknown[kind] = unknown.get(kind, 0) + 1
                entry += entry_header_size + payload_size
            at = max(container_end, at + 8)
    if not containers:
        raise NotACudaLibrary(f"{FATBIN_SECTION} holds no fat binary")
    return CudaCode(tuple(sorted(sass, key=_architecture_key)), tuple(sorted(ptx, key=_architecture_key)),
                    containers, entries, unknown)


def _architecture(label: str) -> Tuple[int, int, bool]:
    """``sm_86`` -> (8, 6, False); ``sm_90a`` -> (9, 0, True); ``sm_100`` -> (10, 0, False)."""
    number, digits = _architecture_key(label)
    return number // 10, number % 10, digits.endswith(("a", "f"))


def _sass_runs_on(label: str, compute_capability: Tuple[int, int]) -> bool:
    major, minor, specific = _architecture(label)
    return major == compute_capability[0] and (minor == compute_capability[1] if specific
                                               else minor <= compute_capability[1])


def _ptx_compiles_for(label: str, compute_capability: Tuple[int, int]) -> bool:
    major, minor, specific = _architecture(label)
    return (major, minor) == tuple(compute_capability) if specific else (major, minor) <= tuple(compute_capability)


def kernel_for(code: CudaCode, compute_capability: Tuple[int, int]) -> Optional[str]:
    """What runs on a GPU of ``compute_capability``: ``"sm_86"`` (machine code), ``"compute_90
    (PTX, compiled on first use)"``, or None when the library has nothing for it.

    SASS ``sm_XY`` runs on X.Z with Z >= Y (same major only); architecture-specific SASS
    (``sm_90a``) on exactly X.Y; PTX ``compute_XY`` on every X.Y or newer, architecture-specific
    PTX on exactly X.Y. The newest matching SASS wins over PTX.
    """
    usable = [label for label in code.sass if _sass_runs_on(label, compute_capability)]
    if usable:
        return max(usable, key=_architecture_key)
    jit = [label for label in code.ptx if _ptx_compiles_for(label, compute_capability)]
    if jit:
        return f"{max(jit, key=_architecture_key)} (PTX, compiled by the driver on first use)"
    return None
