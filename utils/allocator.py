"""Keep freed memory in the process, so a training step reuses it instead of asking the kernel again.

PyTorch's CPU tensors come from the C library's malloc. glibc serves every block over its mmap
threshold (128 kB, adapting up to 32 MB) with a fresh ``mmap`` and hands it back on ``free``, and
trims the heap's top above 128 kB: each step of a batch-512 epoch then page-faults and zeroes its
activations' megabytes anew. That was 30% of a LeNet5 training step on these cores (36 ms against
25 ms a step, ``bench/train_throughput.py``). PyTorch's CPU tuning guide swaps in jemalloc or
tcmalloc with ``LD_PRELOAD`` for this; ``mallopt`` asks glibc itself for the same behaviour from
inside the process: no mmap per block, no trimming. Peak resident memory is what the process
needs at its busiest either way (measured: the same within 2%). A no-op where the C library is not
glibc.
"""
import ctypes
import os

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1  # mallopt takes a C int


def reuse_freed_memory():
    """Ask glibc to serve large blocks from its heap and never shrink it. Returns whether it took."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return False
    except (AttributeError, ValueError, OSError):  # not a GNU system
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, _INT_MAX))
