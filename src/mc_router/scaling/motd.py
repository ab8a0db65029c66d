"""The asleep/loading MOTD text: choosing it (spec §5.2) and filling in its tokens (§5.4).

Pure functions, no clock of their own: callers pass `now`. Two tokens:

* `{duration}` is upstream's: a countdown to the route's deadline (only Docker Swarm sets one
  upstream), `now` when there is no deadline or it has passed. Per-route MOTDs only; global
  MOTDs keep `{duration}` verbatim (Q36 kept). While a route is waking and has no deadline of
  its own, the wake's ETA serves as the deadline: upstream would print `now` there, which says
  nothing, while a countdown is what the token means.
* `{eta}` is ours (issue #5): the wake's estimated remaining time, or `UNKNOWN_ETA` before the
  first wake of a route has been timed. It is formatted in per-route *and* global MOTDs:
  upstream has no such token, so no upstream configuration can be affected.
"""

from __future__ import annotations

import math
from typing import Final

__all__ = [
    "DURATION_TOKEN",
    "ETA_TOKEN",
    "NOW",
    "UNKNOWN_ETA",
    "choose_motd",
    "format_duration",
    "go_duration",
    "render_eta",
]

DURATION_TOKEN: Final = "{duration}"
ETA_TOKEN: Final = "{eta}"
#: What `{duration}` becomes without a deadline, or once it has passed (§5.4).
NOW: Final = "now"
#: What `{eta}` becomes before any wake of the route has been timed. Reads naturally in the
#: likely templates ("ready soon", "ETA: soon"); "now" would promise too much.
UNKNOWN_ETA: Final = "soon"


def go_duration(seconds: float) -> str:
    """Go's `time.Duration.String()` of `seconds` rounded to whole seconds, halves away from zero.

    `0s`, `45s`, `1m5s`, `1h0m0s`, `2h3m4s`: zero units are left out only while leading.
    """
    whole = math.floor(abs(seconds) + 0.5)
    sign = "-" if seconds < 0 and whole else ""
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{sign}{minutes}m{secs}s"
    return f"{sign}{secs}s"


def format_duration(motd: str, *, deadline: float | None, now: float) -> str:
    """Upstream's `{duration}` substitution (§5.4): a countdown to `deadline`, else `now`.

    `deadline` and `now` are on the same clock; None plays the role of Go's zero time.
    """
    if DURATION_TOKEN not in motd:
        return motd
    if deadline is None or now >= deadline:
        return motd.replace(DURATION_TOKEN, NOW)
    return motd.replace(DURATION_TOKEN, go_duration(deadline - now))


def render_eta(motd: str, remaining: float | None) -> str:
    """Replace `{eta}` with the estimated remaining wake time, or `UNKNOWN_ETA`."""
    if ETA_TOKEN not in motd:
        return motd
    return motd.replace(ETA_TOKEN, UNKNOWN_ETA if remaining is None else go_duration(remaining))


def choose_motd(
    *,
    route_asleep: str,
    route_loading: str,
    global_asleep: str,
    global_loading: str,
    waking: bool,
    now: float,
    deadline: float | None = None,
    eta: float | None = None,
) -> str:
    """The predefined-status MOTD for a route (§5.2), tokens filled in; "" means serve nothing.

    `waking`: a wake is in flight for the route; `eta`: its estimated remaining seconds (None
    when unknown); `deadline`: the route's own countdown deadline, if it has one (same clock
    as `now`). Per-route texts get `{duration}` and `{eta}`; global ones only `{eta}` (Q36).
    """
    if waking:
        countdown = deadline if deadline is not None else _eta_deadline(eta, now)
        if route_loading:
            return render_eta(format_duration(route_loading, deadline=countdown, now=now), eta)
        if global_loading:
            return render_eta(global_loading, eta)
    if route_asleep:
        return render_eta(format_duration(route_asleep, deadline=deadline, now=now), eta)
    return render_eta(global_asleep, eta)


def _eta_deadline(eta: float | None, now: float) -> float | None:
    return None if eta is None else now + eta
