"""Pure routing: hostname normalisation, backend addresses and the route table.

Must not import asyncio, sockets or any I/O library: everything here is data and functions on
data, so the whole package is testable without a loop. Writers of routes (flags, the routes
file, the REST API, automc) and readers (sessions, webhooks, metrics) meet only here.
"""

from mc_router.routing.address import Backend, normalize_server_address, parse_backend
from mc_router.routing.table import (
    Lookup,
    Route,
    RouteListener,
    RoutingTable,
    Sleeper,
    SyncResult,
    Waker,
)

__all__ = [
    "Backend",
    "Lookup",
    "Route",
    "RouteListener",
    "RoutingTable",
    "Sleeper",
    "SyncResult",
    "Waker",
    "normalize_server_address",
    "parse_backend",
]
