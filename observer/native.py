"""The C library's calls that Python does not make itself, for the daemon.

Loaded once from the process's own symbols (its libc's, whichever that is). Each use has a
way on when a call is missing (a libc without it) or refused: the daemon goes on without
what it asked for.
"""

from __future__ import annotations

import ctypes
import functools
import threading

# <sys/prctl.h>: set the calling thread's name (what the kernel keeps of it: 15 bytes).
_PR_SET_NAME = 15
_NAME_BYTES = 15


@functools.cache
def libc() -> ctypes.CDLL | None:
    """The C library, with errno kept for ``ctypes.get_errno``; None where it cannot load."""
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def kernel_thread_name(name: str) -> bytes:
    """What the kernel is told of a thread named ``name``: observer's threads are called
    observer-PART (PART_N in a pool), which it keeps as obs-PART, cut to 15 bytes."""
    if name.startswith("observer-"):
        name = "obs-" + name.removeprefix("observer-")
    return name.encode(errors="replace")[:_NAME_BYTES]


def name_thread() -> None:
    """Tell the kernel the calling thread's name, so that ``top -H``, ``ps -L`` and
    /proc/PID/task/TID/comm say which of the daemon's parts a thread is (each is called
    as its thread starts: a pool's initializer, a thread's target)."""
    c = libc()
    prctl = getattr(c, "prctl", None)
    if prctl is not None:
        prctl(_PR_SET_NAME, kernel_thread_name(threading.current_thread().name), 0, 0, 0)
