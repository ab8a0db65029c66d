"""Waking sleeping backends: one coordinator for every kind of waker.

Whatever wakes a server (automc's HTTP control plane, upstream's webhook scaler), sessions
go through `WakeCoordinator`: one wake in flight per route, shared by every login that
arrives meanwhile; a moving average of past wake times for the ETA players see.

Imports only the pure core (routing, errors) and asyncio; never the relay or other adapters.
"""

from mc_router.scaling.wake import Wake, WakeCoordinator

__all__ = ["Wake", "WakeCoordinator"]
