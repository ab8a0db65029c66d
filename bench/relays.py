"""Minimal relays for the data-plane option comparison (DESIGN.md "The data plane is the hot path").

Each one does only what every design must do: read the client's Handshake frame, dial one fixed
backend, replay the bytes read so far, then relay both ways until both sides are done. No routing,
logging, rate limiting or events, so the differences between them are the I/O style alone:

* ``streams``  - asyncio streams: one handler task plus one pump task per direction (the naive
  relay the issue measured at ~0.37x haproxy's connection rate and ~11 KiB per idle connection);
* ``protocol`` - ``asyncio.Protocol`` callbacks with ``pause_reading``/``resume_reading``
  backpressure, no task per connection once linked (the shape of ``mc_router.relay.pipe``);
* ``splice``   - raw non-blocking sockets moved with ``os.splice`` through a kernel pipe, driven
  by ``add_reader``/``add_writer`` callbacks, so payload bytes never enter Python. Pipes are
  taken from a shared pool only while bytes are in flight, so an idle connection holds none.

Run: ``python bench/relays.py --kind protocol --loop uvloop --port 25599 \
--backend 127.0.0.1:25600``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import resource
import signal
import socket
from collections.abc import Callable

CHUNK = 256 * 1024
MAX_HELLO = 64 * 1024
_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)


def hello_complete(buf: bytes | bytearray) -> bool:
    """True once `buf` holds one whole length-prefixed frame (the Handshake)."""
    length = shift = 0
    for i in range(min(len(buf), 3)):
        byte = buf[i]
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return len(buf) >= i + 1 + length
        shift += 7
    if len(buf) >= 3:
        raise ValueError("bad frame length")
    return False


# -- asyncio streams ---------------------------------------------------------------------------


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()


def streams_server(backend: tuple[str, int]) -> Callable[..., object]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        bwriter = None
        try:
            buf = b""
            while not hello_complete(buf):
                data = await reader.read(MAX_HELLO)
                if not data:
                    return
                buf += data
            breader, bwriter = await asyncio.open_connection(*backend)
            bwriter.write(buf)
            await asyncio.gather(_pump(reader, bwriter), _pump(breader, writer))
        except (OSError, ValueError):
            pass
        finally:
            writer.close()
            if bwriter is not None:
                bwriter.close()

    return handle


# -- asyncio.Protocol ----------------------------------------------------------------------------


class _End(asyncio.Protocol):
    __slots__ = ("eof", "peer", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _End | None = None
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.peer.transport.write(data)  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is None or peer.eof:
            if peer is not None:
                peer.transport.close()  # type: ignore[union-attr]
            return False
        peer.transport.write_eof()  # type: ignore[union-attr]
        return True

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.transport.pause_reading()  # type: ignore[union-attr]

    def resume_writing(self) -> None:
        if self.peer is not None and not self.peer.eof:
            self.peer.transport.resume_reading()  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.close()


class _ClientEnd(_End):
    __slots__ = ("backend", "buf", "tasks")

    def __init__(self, backend: tuple[str, int], tasks: set[asyncio.Task[None]]) -> None:
        super().__init__()
        self.buf = bytearray()
        self.backend = backend
        self.tasks = tasks

    def data_received(self, data: bytes) -> None:
        if self.peer is not None:
            self.peer.transport.write(data)  # type: ignore[union-attr]
            return
        self.buf += data
        try:
            done = hello_complete(self.buf)
        except ValueError:
            self.transport.abort()  # type: ignore[union-attr]
            return
        if done:
            self.transport.pause_reading()  # type: ignore[union-attr]
            task = asyncio.get_running_loop().create_task(self._dial())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _dial(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, backend = await loop.create_connection(_End, *self.backend)
        except OSError:
            self.transport.close()  # type: ignore[union-attr]
            return
        if self.transport.is_closing():  # type: ignore[union-attr]
            backend.transport.close()  # type: ignore[union-attr]
            return
        backend.peer, self.peer = self, backend
        backend.transport.write(bytes(self.buf))  # type: ignore[union-attr]
        self.buf = bytearray()
        self.transport.resume_reading()  # type: ignore[union-attr]


# -- os.splice -----------------------------------------------------------------------------------


class _PipePool:
    """Kernel pipes lent to a direction only while bytes sit in them."""

    def __init__(self) -> None:
        self.free: list[tuple[int, int]] = []

    def take(self) -> tuple[int, int]:
        if self.free:
            return self.free.pop()
        return os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def give(self, pipe: tuple[int, int]) -> None:
        if len(self.free) < 64:
            self.free.append(pipe)
        else:
            os.close(pipe[0])
            os.close(pipe[1])


class _SpliceDir:
    __slots__ = ("conn", "dst", "eof", "pending", "pipe", "src")

    def __init__(self, conn: _SpliceConn, src: socket.socket, dst: socket.socket) -> None:
        self.conn, self.src, self.dst = conn, src, dst
        self.pipe: tuple[int, int] | None = None
        self.pending = 0
        self.eof = False

    def on_readable(self) -> None:
        conn = self.conn
        if self.pipe is None:
            self.pipe = conn.pool.take()
        try:
            n = os.splice(self.src.fileno(), self.pipe[1], CHUNK, flags=_SPLICE_FLAGS)
        except BlockingIOError:
            self._release()
            return
        except OSError:
            conn.close()
            return
        if n == 0:
            self._release()
            conn.loop.remove_reader(self.src.fileno())
            self.eof = True
            conn.half_closed(self)
            return
        self.pending += n
        self.flush()

    def flush(self) -> None:
        assert self.pipe is not None
        conn = self.conn
        while self.pending:
            try:
                n = os.splice(self.pipe[0], self.dst.fileno(), self.pending, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                # The destination is full: stop reading the source until it drains.
                conn.loop.remove_reader(self.src.fileno())
                conn.loop.add_writer(self.dst.fileno(), self.on_writable)
                return
            except OSError:
                conn.close()
                return
            self.pending -= n
        self._release()

    def on_writable(self) -> None:
        self.flush()
        if not self.pending and not self.conn.closed:
            self.conn.loop.remove_writer(self.dst.fileno())
            self.conn.loop.add_reader(self.src.fileno(), self.on_readable)

    def _release(self) -> None:
        if self.pipe is not None and not self.pending:
            self.conn.pool.give(self.pipe)
            self.pipe = None

    def drop(self) -> None:
        if self.pipe is not None:
            os.close(self.pipe[0])
            os.close(self.pipe[1])
            self.pipe = None


class _SpliceConn:
    __slots__ = ("backend", "client", "closed", "dirs", "loop", "pool")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        pool: _PipePool,
        client: socket.socket,
        backend: socket.socket,
    ) -> None:
        self.loop, self.pool, self.client, self.backend = loop, pool, client, backend
        self.closed = False
        self.dirs = (_SpliceDir(self, client, backend), _SpliceDir(self, backend, client))
        for d in self.dirs:
            loop.add_reader(d.src.fileno(), d.on_readable)

    def half_closed(self, d: _SpliceDir) -> None:
        if all(x.eof for x in self.dirs):
            self.close()
            return
        with contextlib.suppress(OSError):
            d.dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for sock in (self.client, self.backend):
            self.loop.remove_reader(sock.fileno())
            self.loop.remove_writer(sock.fileno())
            sock.close()
        for d in self.dirs:
            d.drop()


async def _splice_session(
    loop: asyncio.AbstractEventLoop,
    pool: _PipePool,
    client: socket.socket,
    backend_addr: tuple[str, int],
) -> None:
    backend = None
    try:
        buf = b""
        while not hello_complete(buf):
            data = await loop.sock_recv(client, MAX_HELLO)
            if not data:
                raise ConnectionError("client closed")
            buf += data
        backend = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        backend.setblocking(False)
        backend.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await loop.sock_connect(backend, backend_addr)
        await loop.sock_sendall(backend, buf)
    except (OSError, ValueError):
        client.close()
        if backend is not None:
            backend.close()
        return
    _SpliceConn(loop, pool, client, backend)


async def splice_server(listener: socket.socket, backend: tuple[str, int]) -> None:
    loop = asyncio.get_running_loop()
    pool = _PipePool()
    tasks: set[asyncio.Task[None]] = set()
    while True:
        try:
            client, _ = await loop.sock_accept(listener)
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                await asyncio.sleep(0.05)
            continue
        client.setblocking(False)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = loop.create_task(_splice_session(loop, pool, client, backend))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


# -- entry point ---------------------------------------------------------------------------------


async def serve(kind: str, port: int, backend: tuple[str, int]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    sock.setblocking(False)
    tasks: set[asyncio.Task[None]] = set()
    if kind == "streams":
        server = await asyncio.start_server(streams_server(backend), sock=sock, limit=CHUNK)
    elif kind == "protocol":
        server = await loop.create_server(lambda: _ClientEnd(backend, tasks), sock=sock)
    else:
        server = None
        task = loop.create_task(splice_server(sock, backend))
    await stop.wait()
    if server is not None:
        server.close()
    else:
        task.cancel()
        sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--kind", choices=("streams", "protocol", "splice"), required=True)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend", required=True, help="host:port")
    args = parser.parse_args()
    host, _, port = args.backend.rpartition(":")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    if args.loop == "uvloop":
        import uvloop  # noqa: PLC0415

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(args.kind, args.port, (host, int(port))))


if __name__ == "__main__":
    main()
