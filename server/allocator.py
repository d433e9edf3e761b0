"""Large blocks go back to the operating system when they are freed.

glibc's malloc serves a block of 128 KB or more with its own mmap, returned to the system on
free, but each time such a block is freed it raises that threshold to the block's size (up
to 32 MB): from then on blocks of that size come from the heap, and a freed heap block stays
in the process unless it is at the very top. A server whose large blocks are frames and
request bodies of big messages therefore kept its peak: 20 agent sockets that stopped
reading for 150 messages of 150 KB took the web process from 69 to 913 MB, and it stayed at
909 MB after they closed, with nothing referencing that memory any more (malloc_trim(0)
gave it back; a fixed threshold, the same run: 889 MB, then 79 MB once they closed).
Fixing the threshold stops the adjustment, so large blocks keep their own mappings and
every one is unmapped when freed. The cost is an mmap and munmap per large block, small
next to filling 128 KB. Operators can still choose with glibc's own variable
MALLOC_MMAP_THRESHOLD_, which is then left alone."""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
MMAP_THRESHOLD = 128 * 1024  # glibc's default starting value


def return_large_blocks() -> bool:
    """Fix glibc's mmap threshold; True if it was set (False elsewhere than glibc)."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):  # no mallopt (macOS)
        return False
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1:  # musl: a stub that does nothing
        log.info("mallopt(M_MMAP_THRESHOLD) not supported: freed large blocks may stay")
        return False
    return True
