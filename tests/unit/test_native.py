"""The C library's calls: a thread's name as the kernel keeps it (read back from /proc)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from observer.native import kernel_thread_name, libc, name_thread


@pytest.mark.parametrize(
    ("name", "kept"),
    [
        ("observer-store_0", b"obs-store_0"),
        ("observer-journal", b"obs-journal"),
        ("observer-metrics_0", b"obs-metrics_0"),
        ("observer-http", b"obs-http"),
        ("observer-a-very-long-part-name", b"obs-a-very-long"),
        ("MainThread", b"MainThread"),
        ("Thread-1 (wörk)", b"Thread-1 (w\xc3\xb6rk"),
    ],
)
def test_observers_threads_are_told_to_the_kernel_as_obs_part_in_15_bytes(
    name: str, kept: bytes
) -> None:
    assert kernel_thread_name(name) == kept
    assert len(kept) <= 15


def test_a_named_thread_shows_its_name_in_proc() -> None:
    if getattr(libc(), "prctl", None) is None:
        pytest.skip("this C library has no prctl")
    seen: list[str] = []

    def run() -> None:
        name_thread()
        comm = Path(f"/proc/self/task/{threading.get_native_id()}/comm")
        seen.append(comm.read_text().rstrip("\n"))

    thread = threading.Thread(target=run, name="observer-store_0")
    thread.start()
    thread.join()
    assert seen == ["obs-store_0"]
