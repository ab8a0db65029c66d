"""Writers of routes that live outside the process: the routes file (spec §7).

Each source reads its own format and writes the shared `RoutingTable` through its public
methods only, tagging what it writes with its `source` name. Sources import `routing` and the
standard library; they never import the relay, the API or each other.
"""

from mc_router.sources.routes_file import RoutesConfig, RoutesFile, parse_routes_config

__all__ = ["RoutesConfig", "RoutesFile", "parse_routes_config"]
