"""Keep freed memory in the process, so a training step reuses it instead of asking the kernel again.

PyTorch's CPU tensors come from the C library's malloc. glibc serves every block over its mmap
threshold (128 kB, adapting up to 32 MB) with a fresh ``mmap`` and hands it back on ``free``, and
trims the heap's top above 128 kB: each step of a large-batch epoch then page-faults and zeroes its
activations' megabytes anew, a large share of a small model's training step. PyTorch's CPU tuning
guide swaps in jemalloc or tcmalloc with ``LD_PRELOAD`` for this; ``mallopt`` asks glibc itself
from inside the process: blocks up to 32 MB (glibc's largest threshold, above a batch's activation
tensors) come from the heap, and the heap is never trimmed. Larger blocks (float64 evaluations of
16-bit quantization candidates) are still mapped and returned: with no mmap at all they fragment
the heap and raise quantize.py's peak memory. The figures are in docs/benchmarks.md ("Freed memory
kept in the process"). A no-op where the C library is not glibc.
"""
import ctypes
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest: a batch's activation tensors stay below it
_INT_MAX = 2**31 - 1  # mallopt takes a C int


def reuse_freed_memory() -> bool:
    """Ask glibc to serve blocks up to 32 MB from its heap and never shrink it. Returns whether it took."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return False
    except (AttributeError, ValueError, OSError):  # not a GNU system
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, _INT_MAX))
