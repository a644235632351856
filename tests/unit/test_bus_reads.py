"""The daemon reads its bus connection in gulps: after each read the socket is left alone for
a moment, so that a burst of signals costs a few wakeups of the loop, not one a signal."""

from __future__ import annotations

import asyncio
import socket
from typing import cast

from dbus_fast.aio import MessageBus

from observer.recording.bus import READ_PAUSE_SECONDS, gather_reads


class SocketBus:
    """What gather_reads uses of dbus-fast's MessageBus: its socket's fd, and whether it is
    connected; the reader is registered with the loop as dbus-fast registers its own."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.connected = True


async def test_a_burst_of_messages_is_read_in_a_few_gulps_and_nothing_is_left_unread() -> None:
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    received: list[bytes] = []
    reads = 0
    all_read = asyncio.Event()

    def dbus_fast_reader() -> None:
        nonlocal reads
        reads += 1
        received.append(ours.recv(65536))
        if len(b"".join(received)) == 800:
            all_read.set()

    bus = SocketBus(ours.fileno())
    loop.add_reader(ours.fileno(), dbus_fast_reader)
    try:
        gather_reads(cast(MessageBus, bus), loop)
        for i in range(200):
            theirs.send(b"m%03d" % i)
            await asyncio.sleep(0)  # the loop's turn: unpaused, it reads each message alone
        async with asyncio.timeout(5):
            await all_read.wait()
        assert b"".join(received) == b"".join(b"m%03d" % i for i in range(200))
        assert reads < 50
        bus.connected = False  # dbus-fast removes the reader itself when it disconnects
        loop.remove_reader(ours.fileno())
        await asyncio.sleep(3 * READ_PAUSE_SECONDS)
        assert ours.fileno() not in loop._selector.get_map()  # type: ignore[attr-defined]
    finally:
        loop.remove_reader(ours.fileno())
        ours.close()
        theirs.close()


async def test_a_loop_built_otherwise_leaves_dbus_fasts_reader_as_it_is() -> None:
    loop = asyncio.get_running_loop()
    gather_reads(cast(MessageBus, SocketBus(-1)), loop)  # not a file descriptor
    gather_reads(cast(MessageBus, SocketBus(12345)), loop)  # no reader registered for it
    assert 12345 not in loop._selector.get_map()  # type: ignore[attr-defined]
