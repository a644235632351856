"""The floor under the daemon's event loop: receiving systemd's signals with nothing done.

    .venv/bin/python -m bench.bus_floor BUS_ADDRESS

Connects to a bus with dbus-fast, asks dbus-daemon for the signals the daemon asks for (its
match rules, observer.recording.bus.MATCH_RULES), subscribes to systemd's, reads the
connection as the daemon reads it (gathered, gather_reads) and only counts what arrives:
no decoding, no correlating, no calls back. Prints "ready" once subscribed; on SIGTERM
prints how many signals it read and exits. bench.burst --floor runs it beside the daemon,
so that its CPU per run is what dbus-fast alone costs for the same signals: the part of
the daemon's cost that no change to observer's own code can take away.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from observer.recording.bus import MANAGER, MANAGER_PATH, MATCH_RULES, SYSTEMD, gather_reads

READY = "ready"


async def listen(bus_address: str) -> int:
    """Count the signals that arrive until SIGTERM; their number."""
    bus = await MessageBus(bus_address=bus_address).connect()
    count = 0

    def counted(msg: Message) -> None:
        nonlocal count
        if msg.message_type is MessageType.SIGNAL:
            count += 1

    bus.add_message_handler(counted)
    loop = asyncio.get_running_loop()
    gather_reads(bus, loop)
    for rule in MATCH_RULES:
        await call(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                   "org.freedesktop.DBus", "AddMatch", "s", [rule])  # fmt: skip
    await call(bus, SYSTEMD, MANAGER_PATH, MANAGER, "Subscribe")
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    print(READY, flush=True)
    await stopped.wait()
    bus.disconnect()
    return count


async def call(
    bus: MessageBus,
    destination: str,
    path: str,
    interface: str,
    member: str,
    signature: str = "",
    body: list[object] | None = None,
) -> None:
    reply = await bus.call(
        Message(destination=destination, path=path, interface=interface, member=member,
                signature=signature, body=body or [])
    )  # fmt: skip
    if reply.message_type is MessageType.ERROR and not str(reply.error_name).endswith(
        "AlreadySubscribed"
    ):
        raise SystemExit(f"bench.bus_floor: {member}: {reply.error_name} {reply.body}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    count = asyncio.run(listen(args[0]))
    print(f"signals read: {count}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
