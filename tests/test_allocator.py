"""utils/allocator.py: large blocks come from glibc's heap and stay there once freed."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = r"""
import ctypes, sys
sys.path.insert(0, {root!r})
from utils.allocator import reuse_freed_memory

class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Mallinfo2
took = reuse_freed_memory() if sys.argv[1] == "on" else False
block = bytearray(64 << 20)          # 64 MB: over glibc's largest mmap threshold
mmapped = libc.mallinfo2().hblkhd
del block
print(int(took), mmapped >> 20, libc.mallinfo2().arena >> 20)
"""


def _probe(mode):
    out = subprocess.run([sys.executable, "-c", PROBE.format(root=ROOT), mode], capture_output=True, text=True,
                         check=True).stdout.split()
    return [int(v) for v in out]


@pytest.mark.skipif(not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"), reason="glibc only")
def test_large_blocks_come_from_the_heap_and_are_kept_after_free():
    took, mmapped, heap_after_free = _probe("on")
    assert took == 1
    assert mmapped == 0                  # served from the heap, not a fresh mmap
    assert heap_after_free >= 64         # freed, yet kept for the next step's tensors


@pytest.mark.skipif(not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"), reason="glibc only")
def test_without_it_glibc_maps_and_unmaps_each_large_block():
    took, mmapped, heap_after_free = _probe("off")
    assert (took, mmapped >= 64, heap_after_free < 64) == (0, True, True)
