"""A run's memory settings: the C heap kept, and the cycle collector run less often.

Every renderer writes a batch of lines as one string (a few hundred KB, a run
of copies several MB), then drops it. glibc maps an allocation that big
afresh each time, or trims the heap's free top, so the next batch's memory is
new to the process and every page of it faults in: on this machine that made
writing a 260 KB batch cost 1.6 µs a line against 0.11 with the heap kept, and
`--format all` spend 2.0 s of system time against 1.25 (peak RSS unchanged:
the batches reuse one place). Nothing to do where the C library is not glibc.

And Python's cycle collector runs after GC_EVERY allocations, not 700: a run
allocates a few objects a line and makes almost no cycles, and the collections
took 3% of `--format all` (0.15-0.2 s less, peak RSS the same).
"""

from __future__ import annotations

import ctypes
import gc

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_FROM = 32 << 20  # glibc's most: allocations past this are still mapped (and unmapped)
TRIM_FROM = 64 << 20  # free memory at the heap's top kept up to this
GC_EVERY = 50_000


def keep() -> None:
    gc.set_threshold(GC_EVERY, *gc.get_threshold()[1:])
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_FROM)
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_FROM)
    except (OSError, AttributeError):  # no C library to ask, or one without mallopt
        pass
