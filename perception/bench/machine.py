"""The CPU this process runs on, as the benchmarks and `percept doctor` report it: its model and the x86
vector extensions that decide how fast the detector runs (AVX-512) and whether int8 sums are exact.
Without VNNI, onnxruntime sums uint8 x int8 products in 16-bit lanes that saturate with 8-bit weights,
so an int8 model needs its weights on 7 bits there (perception/train/quantize.py)."""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass

# /proc/cpuinfo flag -> the name people know it by
VECTOR_EXTENSIONS = (
    ("avx2", "AVX2"),
    ("avx512f", "AVX-512"),
    ("avx512_vnni", "AVX-512 VNNI"),
    ("avx_vnni", "AVX-VNNI"),
    ("amx_int8", "AMX"),
)


@dataclass(frozen=True)
class Cpu:
    model: str
    extensions: tuple[str, ...]  # of VECTOR_EXTENSIONS, by name
    flags_read: bool  # False where there is no x86 flag list (another architecture, another OS)

    @property
    def vnni(self) -> bool:
        return "AVX-512 VNNI" in self.extensions or "AVX-VNNI" in self.extensions

    def summary(self) -> str:
        if not self.flags_read:
            return f"{self.model}: no x86 feature flags to read"
        return f"{self.model}: {', '.join(self.extensions) or 'no AVX2'}"


@functools.cache
def cpu() -> Cpu:
    """This machine's CPU (read once)."""
    try:
        with open("/proc/cpuinfo") as f:
            return parse_cpuinfo(f.read())
    except OSError:
        return parse_cpuinfo("")


def parse_cpuinfo(text: str) -> Cpu:
    """The first processor of a /proc/cpuinfo text (x86 lists "model name" and "flags"; others neither)."""
    model, flags = "", None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
            break
    model = model or platform.machine()
    if flags is None:
        return Cpu(model, (), False)
    return Cpu(model, tuple(name for flag, name in VECTOR_EXTENSIONS if flag in flags), True)
