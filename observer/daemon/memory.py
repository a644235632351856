"""What the daemon does about its own memory, beyond holding little."""

from __future__ import annotations

import logging

from observer.native import libc

log = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h): the most arenas malloc keeps, and the size from
# which a block is mapped on its own (and unmapped when freed).
_M_ARENA_MAX, _M_MMAP_THRESHOLD = -8, -3
MMAP_THRESHOLD = 128 * 1024


def tune_malloc() -> None:
    """Have glibc's malloc keep less memory that is free (``MALLOC_ARENA_MAX=1``,
    ``MALLOC_MMAP_THRESHOLD_=131072``).

    By default each thread that allocates gets an arena of its own (up to 8 per core), and
    memory freed in one is kept there for that thread: the daemon's threads (the store's,
    the metrics', the alerts', the journal's, ...) held 4-5 MiB free that way at a million
    runs, a twelfth of its RSS. They run Python under one lock (the GIL) anyway: only
    SQLite's work runs outside it. And glibc raises the size from which a block is mapped
    on its own to that of the largest one freed: large blocks (the metrics' rendering makes
    megabytes of text and long lists of lines for 1,000 units) then stayed in the heap
    once freed, 3.2 MiB free there at a million runs; at a fixed 128 KiB (glibc's default
    start) they go back to the system, and 0.2 MiB was left free. Called before any
    thread starts; a libc without mallopt (musl) keeps its own ways.
    """
    mallopt = getattr(libc(), "mallopt", None)
    if mallopt is None:
        return
    for parameter, value in ((_M_ARENA_MAX, 1), (_M_MMAP_THRESHOLD, MMAP_THRESHOLD)):
        if not mallopt(parameter, value):
            log.debug("mallopt(%d, %d) was refused", parameter, value)
