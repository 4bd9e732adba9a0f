"""dualstylegan.allocator: freed memory kept for the next pass (Linux/glibc), restorable, opt-out by environment."""
from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

CHILD = textwrap.dedent("""
    import resource, sys
    import torch
    from dualstylegan.allocator import retain_freed_memory
    on = retain_freed_memory(sys.argv[1] == "on")
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    def network_pass():  # a chain of layers, each output bigger than glibc's largest mmap threshold (32 MiB)
        x = torch.ones(1 << 20)
        for mib in (40, 80, 160, 160, 80, 40):
            x = torch.empty(mib << 18).fill_(float(x[0]))
        return float(x[0])
    for _ in range(5):  # the heap settles into its layout over the first passes (after 2: 0-480 MiB of faults
        network_pass()  # in the next 3, varying between runs; after 5: none in 20 runs)
    before = faults()
    for _ in range(3):
        network_pass()
    print(on, faults() - before)
""")


def _faults(mode: str, env: dict | None = None) -> tuple[str, int]:
    import os

    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})}).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_retained_memory_is_reused_without_page_faults():
    on, faults_on = _faults("on")
    off, faults_off = _faults("off")
    assert on == "True" and off == "False"
    pages = 3 * (40 + 80 + 160 + 160 + 80 + 40) * 256
    assert faults_off > pages // 2  # every block mapped and faulted in again
    assert faults_on < faults_off // 4  # most blocks reused


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_environment_leaves_glibc_defaults():
    on, faults_on = _faults("on", {"DUALSTYLEGAN_MALLOC": "system"})
    assert on == "False" and faults_on > 3 * 560 * 256 // 2


def test_restoring_is_harmless_anywhere():
    from dualstylegan.allocator import retain_freed_memory

    assert retain_freed_memory(False) is False
