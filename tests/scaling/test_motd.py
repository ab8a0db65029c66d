"""The asleep/loading MOTD: Go duration strings, `{duration}` (§5.4), `{eta}`, and §5.2's choice."""

from __future__ import annotations

import pytest

from mc_router.scaling.motd import (
    UNKNOWN_ETA,
    choose_motd,
    format_duration,
    go_duration,
    render_eta,
)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.49, "0s"),
        (0.5, "1s"),  # halves round away from zero
        (1.5, "2s"),
        (2.5, "3s"),
        (45, "45s"),
        (59.6, "1m0s"),
        (65, "1m5s"),
        (600, "10m0s"),
        (3600, "1h0m0s"),  # zero units vanish only while leading
        (3601, "1h0m1s"),
        (7384, "2h3m4s"),
        (90061, "25h1m1s"),  # Go has no day unit
    ],
)
def test_go_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


@pytest.mark.parametrize(
    ("motd", "deadline", "now", "expected"),
    [
        ("no token here", 100.0, 0.0, "no token here"),
        ("back in {duration}", None, 50.0, "back in now"),  # Go's zero deadline
        ("back in {duration}", 100.0, 35.0, "back in 1m5s"),
        ("back in {duration}", 100.0, 99.5, "back in 1s"),
        ("back in {duration}", 100.0, 100.0, "back in now"),  # deadline reached
        ("back in {duration}", 100.0, 150.0, "back in now"),  # deadline passed
        ("{duration}/{duration}", 145.0, 100.0, "45s/45s"),  # every occurrence
    ],
)
def test_format_duration(motd: str, deadline: float | None, now: float, expected: str) -> None:
    assert format_duration(motd, deadline=deadline, now=now) == expected


def test_render_eta() -> None:
    assert render_eta("ready in {eta}", 42.4) == "ready in 42s"
    assert render_eta("ready in {eta}", None) == f"ready in {UNKNOWN_ETA}"
    assert render_eta("no token", 5.0) == "no token"


def motd(
    *,
    route_asleep: str = "",
    route_loading: str = "",
    global_asleep: str = "",
    global_loading: str = "",
    waking: bool = False,
    eta: float | None = None,
    deadline: float | None = None,
) -> str:
    return choose_motd(
        route_asleep=route_asleep,
        route_loading=route_loading,
        global_asleep=global_asleep,
        global_loading=global_loading,
        waking=waking,
        now=1000.0,
        eta=eta,
        deadline=deadline,
    )


class TestChooseMotd:
    """§5.2: route loading > global loading > route asleep > global asleep."""

    def test_route_loading_wins_while_waking(self) -> None:
        assert (
            motd(route_loading="route loading", global_loading="global loading", waking=True)
            == "route loading"
        )

    def test_global_loading_without_route_loading(self) -> None:
        assert motd(global_loading="global loading", waking=True) == "global loading"

    def test_asleep_when_no_loading_text(self) -> None:
        assert motd(route_asleep="zzz", global_asleep="global zzz", waking=True) == "zzz"
        assert motd(global_asleep="global zzz", waking=True) == "global zzz"

    def test_loading_ignored_when_not_waking(self) -> None:
        assert motd(route_loading="loading", route_asleep="asleep") == "asleep"
        assert motd(global_loading="loading", global_asleep="asleep") == "asleep"

    def test_nothing_configured_serves_nothing(self) -> None:
        assert motd(waking=True) == ""
        assert motd() == ""

    def test_route_duration_uses_route_deadline(self) -> None:
        assert motd(route_asleep="restart in {duration}", deadline=1045.0) == "restart in 45s"
        assert motd(route_asleep="restart in {duration}") == "restart in now"

    def test_route_loading_duration_counts_down_the_eta(self) -> None:
        assert motd(route_loading="ready in {duration}", waking=True, eta=65.0) == "ready in 1m5s"
        # No ETA yet (first wake): upstream's "now".
        assert motd(route_loading="ready in {duration}", waking=True) == "ready in now"

    def test_route_deadline_beats_eta(self) -> None:
        text = motd(route_loading="{duration}", waking=True, eta=65.0, deadline=1010.0)
        assert text == "10s"

    def test_global_duration_is_never_formatted_q36(self) -> None:
        assert (
            motd(global_loading="ready in {duration}", waking=True, eta=30.0, deadline=1010.0)
            == "ready in {duration}"
        )
        assert motd(global_asleep="back in {duration}", deadline=1010.0) == "back in {duration}"

    def test_eta_formatted_in_route_and_global_texts(self) -> None:
        assert motd(global_loading="ready in {eta}", waking=True, eta=30.0) == "ready in 30s"
        assert motd(route_loading="ETA {eta}", waking=True, eta=90.0) == "ETA 1m30s"
        assert motd(global_loading="ETA {eta}", waking=True) == f"ETA {UNKNOWN_ETA}"
