"""The CPU facts `percept doctor` and the benchmarks report: read from /proc/cpuinfo texts."""

from __future__ import annotations

from perception.bench.machine import cpu, parse_cpuinfo

EPYC_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme sse sse2 avx f16c avx2 bmi2 sha_ni
processor\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme sse sse2 avx f16c avx2 bmi2 sha_ni avx512f avx512_vnni
"""
XEON_AMX = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480C
flags\t\t: avx avx2 avx512f avx512bw avx512_vnni avx_vnni amx_bf16 amx_int8
"""
ARM = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp
CPU implementer\t: 0x41
"""


def test_the_first_processor_is_read_and_vnni_found_either_way():
    avx2 = parse_cpuinfo(EPYC_AVX2)
    assert avx2.summary() == "AMD EPYC 7B13: AVX2" and not avx2.vnni  # the second processor is not read
    xeon = parse_cpuinfo(XEON_AMX)
    assert xeon.extensions == ("AVX2", "AVX-512", "AVX-512 VNNI", "AVX-VNNI", "AMX") and xeon.vnni
    assert parse_cpuinfo("model name : X\nflags : sse2\n").summary() == "X: no AVX2"


def test_a_cpu_without_x86_flags_says_so_and_this_machine_is_read():
    arm = parse_cpuinfo(ARM)
    assert not arm.flags_read and not arm.vnni and arm.summary().endswith(": no x86 feature flags to read")
    assert cpu().summary()  # whatever this machine is, a line
