"""What the daemon does about its own memory, beyond holding little."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

# glibc's mallopt parameter for the most arenas malloc keeps (malloc.h).
_M_ARENA_MAX = -8


def one_malloc_arena() -> None:
    """Have every thread allocate from one glibc malloc arena (as ``MALLOC_ARENA_MAX=1``).

    By default each thread that allocates gets an arena of its own (up to 8 per core), and
    memory freed in one is kept there for that thread: the daemon's threads (the store's,
    the metrics', the alerts', the journal's, ...) held 4-5 MiB free that way at a million
    runs, a twelfth of its RSS. They run Python under one lock (the GIL) anyway: only
    SQLite's work runs outside it. Called before any thread starts; a libc without mallopt
    (musl) keeps its own ways.
    """
    import ctypes  # noqa: PLC0415 (only the daemon calls this)

    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: its libc's
    except (OSError, AttributeError):
        return
    if not mallopt(_M_ARENA_MAX, 1):
        log.debug("mallopt(M_ARENA_MAX, 1) was refused")
