"""utils/allocator.py: blocks up to 32 MB come from glibc's heap and stay there once freed."""
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
block = bytearray(16 << 20)          # 16 MB: a batch's conv1 activations are 17.6 MB
mmapped = libc.mallinfo2().hblkhd
del block
heap = libc.mallinfo2().arena
huge = bytearray(64 << 20)           # over the threshold: mapped, and returned when freed
print(int(took), mmapped >> 20, heap >> 20, libc.mallinfo2().hblkhd >> 20)
"""


def _probe(mode):
    out = subprocess.run([sys.executable, "-c", PROBE.format(root=ROOT), mode], capture_output=True, text=True,
                         check=True).stdout.split()
    return [int(v) for v in out]


@pytest.mark.skipif(not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"), reason="glibc only")
def test_blocks_up_to_32_mb_come_from_the_heap_and_are_kept_after_free():
    took, mmapped, heap_after_free, huge_mapped = _probe("on")
    assert took == 1
    assert mmapped == 0                  # served from the heap, not a fresh mmap
    assert heap_after_free >= 16         # freed, yet kept for the next step's tensors
    assert huge_mapped >= 64             # a block over 32 MB is still mapped


@pytest.mark.skipif(not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"), reason="glibc only")
def test_without_it_glibc_maps_and_unmaps_each_large_block():
    took, mmapped, heap_after_free, _ = _probe("off")
    assert (took, mmapped >= 16, heap_after_free < 16) == (0, True, True)
