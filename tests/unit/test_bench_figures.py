"""The burst benchmark's verdict: the daemon's CPU over PID 1's, beside issue 25's target."""

from __future__ import annotations

from bench.burst import BURST_TARGET, FLOOR, ratios

LOOP = "  of which its event loop"
PID1 = "systemd (PID 1)"


def test_the_daemon_at_the_target_meets_it_and_above_it_does_not() -> None:
    at = ratios({"observer daemon": BURST_TARGET * 4.0, PID1: 4.0})
    above = ratios({"observer daemon": 2.4, PID1: 4.0})

    assert at == [("observer daemon / PID 1 beside it", "0.20x (target <= 0.20x: met)")]
    assert above == [("observer daemon / PID 1 beside it", "0.60x (target <= 0.20x: not met)")]


def test_pid_1_alone_is_the_yardstick_where_it_was_measured() -> None:
    """Beside the daemon PID 1 also answers its questions: its CPU there flatters the ratio."""
    found = ratios({"observer daemon": 1.5, PID1: 3.75}, alone=3.0)

    assert found == [
        ("observer daemon / PID 1 alone", "0.50x (target <= 0.20x: not met)"),
        ("PID 1 beside the daemon / PID 1 alone", "1.25x"),
    ]


def test_the_floor_is_given_over_pid_1_and_under_the_event_loop() -> None:
    cpu = {"observer daemon": 2.4, LOOP: 1.4, PID1: 4.0, FLOOR: 0.7}

    assert ratios(cpu)[1:] == [
        (f"{FLOOR} / PID 1 beside it", "0.17x"),
        ("daemon's event loop / the floor", "2.00x"),
    ]


def test_nothing_is_judged_without_pid_1s_figure() -> None:
    assert ratios({"observer daemon": 2.4}) == []
    assert ratios({"observer daemon": 2.4, PID1: 0.0}) == []
