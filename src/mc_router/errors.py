"""The exception tree of mc-router.

    MCRouterError
     ├── ConfigError            bad flags, env vars or files; startup stops (exit 1 or 2)
     ├── ProtocolError          bytes that break the Minecraft or PROXY protocol
     │    ├── RemoteProtocolError   the peer sent them (a client or a backend)
     │    └── LocalProtocolError    we were asked to encode something unencodable
     └── WakeError              a backend could not be woken (waker failed, timed out, no address)

Catch broadly only at the session boundary and in long-lived services' retry loops.
"""

from __future__ import annotations


class MCRouterError(Exception):
    """Base of every error mc-router raises on purpose."""


class ConfigError(MCRouterError):
    """A setting, flag, env var or config file is invalid."""


class ProtocolError(MCRouterError):
    """Bytes on the wire break the protocol."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that break the protocol."""


class LocalProtocolError(ProtocolError):
    """We were asked to encode a value the protocol cannot carry."""


class WakeError(MCRouterError):
    """A sleeping backend could not be woken."""
