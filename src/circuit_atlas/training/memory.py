"""A process-wide allocator setting for training loops, applied by entry points, never on import."""

from __future__ import annotations

__all__ = ["keep_freed_memory"]


def keep_freed_memory() -> bool:
    """Let glibc keep freed large blocks instead of unmapping them (a process-wide setting).

    A training step allocates and frees logits of ``batch × seq_len × vocab`` floats (tens of
    MB); by default glibc returns such blocks to the OS and the next step page-faults them back
    in. Raising ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` to 1 GiB removes that system time
    (measured: 0.36 → 0.29 s per step for ``small`` on one thread). Called by the ``train`` and
    ``demo`` entry points, never on import. A no-op where glibc is not available.

    Returns:
        Whether the setting was applied.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, 1 << 30))
