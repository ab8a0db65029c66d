"""Shared helpers for the protocol tests: the captured vectors and event collection."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final

from hypothesis import settings

from mc_router.protocol import NEED_DATA, PAUSED, HandshakeEvent, HandshakeReader

# The vectors live in `<repo>/../shared/vectors` (CI clones the repo beside shared/).
REPO_ROOT: Final = Path(__file__).resolve().parents[2]
VECTORS_DIR: Final = REPO_ROOT.parent / "shared" / "vectors"

# No example database: keep test runs from writing `.hypothesis/` into the repo; no deadline
# because byte-at-a-time feeding is deliberately slow-ish on loaded CI machines.
HYPOTHESIS: Final = settings(database=None, deadline=None)

Feeder = Callable[[bytes], tuple[HandshakeReader, list[HandshakeEvent]]]


def load_vector(name: str) -> bytes:
    """Bytes of a `.hex` vector: drop all whitespace, hex-decode the rest (vectors README)."""
    return bytes.fromhex("".join((VECTORS_DIR / name).read_text().split()))


def drain(reader: HandshakeReader) -> list[HandshakeEvent]:
    """Events up to and including the first NEED_DATA or PAUSED."""
    events: list[HandshakeEvent] = []
    while True:
        event = reader.next_event()
        events.append(event)
        if event is NEED_DATA or event is PAUSED:
            return events


def feed_whole(data: bytes) -> tuple[HandshakeReader, list[HandshakeEvent]]:
    reader = HandshakeReader()
    reader.feed(data)
    return reader, [e for e in drain(reader) if e is not NEED_DATA]


def feed_bytewise(data: bytes) -> tuple[HandshakeReader, list[HandshakeEvent]]:
    """Feed one byte at a time, collecting every event except NEED_DATA (PAUSED once)."""
    reader = HandshakeReader()
    events: list[HandshakeEvent] = []
    for i in range(len(data)):
        reader.feed(data[i : i + 1])
        for event in drain(reader):
            if event is not NEED_DATA and not (event is PAUSED and PAUSED in events):
                events.append(event)
    return reader, events
