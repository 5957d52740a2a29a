"""Process-wide memory settings for the CLI's big transfers (the library never changes them)."""

from __future__ import annotations

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Let glibc's malloc reuse the memory it frees instead of handing it back to the kernel at once.

    A push or pull moves each pack (16 MB) through a few temporary buffers: on Python 3.11 the HTTP
    stack copies a request body twice before it reaches the socket. By default glibc maps each such
    buffer fresh and unmaps it when it is freed, so every 4 KB page costs a page fault each time:
    ~600,000 faults and 1.5-3.5 s of system time for a 500 MB push on a VM. Served from one heap that
    keeps its pages, the buffers are faulted in once. The command ends soon after, which returns the
    memory kept. Call it before the transfer threads start; without glibc it does nothing.
    Returns whether the settings took.
    """
    try:
        import ctypes

        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(M_ARENA_MAX, 1)  # threads share the main heap: other arenas give freed memory back on their own
    ok &= mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024)  # glibc's largest: blocks up to 32 MB come from the heap
    ok &= mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024)
    return bool(ok)
