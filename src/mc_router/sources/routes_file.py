"""The JSON routes file (spec §7): load at startup, reload on SIGHUP, watch, save API changes.

    {"default-server": "lobby:25565", "mappings": {"survival.example.net": "survival:25565"}}

Parsing follows Go's `encoding/json` into upstream's struct: top-level member names match
case-insensitively (`Default-Server` works), unknown members are ignored, `null` means empty,
and a value of the wrong type is an error that names its key path. The three ways of applying
the file differ exactly as upstream's do (Q12 kept):

* `apply_initial` (startup, §7.2): a missing file is fine; any other problem stops startup.
* `reload` (SIGHUP, §7.3): parse first; on any error keep every route; else `reset()` the table
  and register the file.
* `watch` (§7.4): the initial-load routine again, debounced, without a reset, so mappings
  deleted from the file stay until a SIGHUP.

Differences from upstream, on purpose:
* Saving (§7.5) is atomic: a temporary file in the same directory, fsync, then rename, so a
  reader never sees a half-written file. Upstream truncates and rewrites in place.
* The watch is on the directory, filtered to the file, so editors that save by renaming a temp
  file over it keep being noticed (upstream's watch ends after the first such save), and the
  file may be created after startup. Only a missing directory stops startup.
* A watch-triggered load skips routes that are already registered with the same backend, so
  our own save (which the watch sees) causes no `route-added` webhook storm.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import secrets
import stat
from collections.abc import Callable
from typing import Any, NamedTuple

from watchfiles import Change, awatch

from mc_router.errors import ConfigError
from mc_router.protocol.gojson import go_json_bytes
from mc_router.routing import Route, RoutingTable

log = logging.getLogger(__name__)

#: Upstream's debounce for watch events (§7.4): each counted event restarts this timer.
WATCH_DEBOUNCE = 5.0
#: How long the watch thread waits for more raw events before handing a batch over; small so
#: that cancelling the watch (shutdown) returns promptly.
_WATCH_STEP_MS = 50
#: Back-off after the watcher itself fails (for example the directory was removed).
_WATCH_RETRY_INITIAL = 1.0
_WATCH_RETRY_MAX = 30.0
#: Mode of a newly created routes file, before the umask (upstream's os.WriteFile 0664).
NEW_FILE_MODE = 0o664
#: `source` tag of routes registered from the file.
SOURCE = "file"


# Go's json.Marshal escapes these inside strings (HTML safety); the bytes we write and serve
# should match upstream's byte for byte.
class RoutesConfig(NamedTuple):
    """A parsed routes file: mappings (keys as written) and the default backend ("" = none)."""

    mappings: dict[str, str]
    default_server: str


#: Builds the route for (server_address, backend); "" is the default route. Lets the wiring
#: attach wakers/sleepers (the webhook scaler) to file routes as upstream's bulk_register does.
RouteFactory = Callable[[str, str], Route]


def file_route(server_address: str, backend: str) -> Route:
    """The default RouteFactory: a plain route tagged `source="file"`."""
    return Route(server_address.lower(), backend, SOURCE)


def parse_routes_config(text: str | bytes, *, origin: str = "routes config") -> RoutesConfig:
    """Parse the routes file's JSON; ConfigError names the problem and where it is."""
    if isinstance(text, bytes):
        # Go replaces invalid UTF-8 inside strings with U+FFFD rather than failing.
        text = text.decode("utf-8", "replace")
    try:
        document = json.loads(text, object_pairs_hook=_Pairs)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{origin}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    if document is None:
        # Go unmarshals `null` into a struct as a no-op: an empty config.
        return RoutesConfig({}, "")
    if not isinstance(document, _Pairs):
        raise ConfigError(
            f"{origin}: expected a JSON object at the top level, got {_kind(document)}"
        )
    mappings: dict[str, str] = {}
    default = ""
    for key, value in document:
        # Go matches struct field names case-insensitively (full Unicode case folding); the
        # last matching member wins, and a map field merges across repeated members.
        folded = key.casefold()
        if folded == "default-server":
            default = _string(value, origin, key)
        elif folded == "mappings":
            if value is None:
                continue
            if not isinstance(value, _Pairs):
                raise ConfigError(f"{origin}: at {key}: expected an object, got {_kind(value)}")
            for server_address, backend in value:
                mappings[server_address] = _string(
                    backend, origin, f"{key}[{json.dumps(server_address)}]"
                )
    return RoutesConfig(mappings, default)


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its ordered (key, value) pairs, so repeated keys are all seen."""


def _string(value: object, origin: str, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"{origin}: at {where}: expected a string, got {_kind(value)}")
    return value


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, _Pairs):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    return "null"


class RoutesFile:
    """One routes file and the ways of applying it to a table."""

    def __init__(self, path: str, *, route_factory: RouteFactory = file_route) -> None:
        self.path = path
        self.route_factory = route_factory
        # Resolved once: relative paths mean the working directory at startup (§7.1).
        self._directory = os.path.dirname(os.path.abspath(path))
        self._name = os.path.basename(os.path.abspath(path))
        #: Why the last load/reload failed, or None when the table reflects the file.
        self.error: str | None = None
        #: Saves that had to fall back to an in-place rewrite (see `_write`).
        self._warned_in_place = False
        self._save_lock = asyncio.Lock()

    @property
    def in_sync(self) -> bool:
        """True when the last load of the file succeeded (for /readyz)."""
        return self.error is None

    def readiness(self) -> tuple[bool, object]:
        """A readiness check for the API's /readyz: (ok, detail)."""
        if self.error is None:
            return True, {"path": self.path}
        return False, {"path": self.path, "error": self.error}

    # -- reading ---------------------------------------------------------------------------

    def load(self) -> RoutesConfig:
        """Read and parse the file. OSError propagates (FileNotFoundError included)."""
        with open(self.path, "rb") as file:
            data = file.read()
        return parse_routes_config(data, origin=self.path)

    def apply_initial(self, table: RoutingTable) -> None:
        """Startup (§7.2): register the file's routes; a missing file means none.

        Raises ConfigError for any other read error or invalid content: startup stops.
        """
        log.info("Loading routes config file", extra={"fields": {"path": self.path}})
        try:
            config = self.load()
        except FileNotFoundError:
            log.info(
                "Routes config file does not exist; starting without its routes",
                extra={"fields": {"path": self.path}},
            )
            return
        except OSError as exc:
            raise ConfigError(
                f"could not load routes config file {self.path}: {exc.strerror or exc}"
            ) from None
        except ConfigError as exc:
            raise ConfigError(f"could not load routes config file: {exc}") from None
        self._register(table, config)
        self.error = None

    def reload(self, table: RoutingTable) -> bool:
        """SIGHUP (§7.3): parse first; on success reset the table and register the file.

        On any error, a missing file included, every current route stays and the reason is
        logged. Returns whether the table was reloaded.
        """
        try:
            config = self.load()
        except (OSError, ConfigError) as exc:
            self._failed(exc)
            return False
        log.info("Re-loading routes config file", extra={"fields": {"path": self.path}})
        table.reset()
        self._register(table, config)
        self.error = None
        return True

    def load_changes(self, table: RoutingTable) -> bool:
        """The watch's load (§7.4): the initial-load routine without a reset (Q12 kept).

        A missing file is only logged; other errors are logged and keep the current routes.
        Returns whether the file was applied.
        """
        try:
            config = self.load()
        except FileNotFoundError:
            log.info(
                "Routes config file does not exist; keeping the current routes",
                extra={"fields": {"path": self.path}},
            )
            return False
        except (OSError, ConfigError) as exc:
            self._failed(exc)
            return False
        log.info("Loading routes config file", extra={"fields": {"path": self.path}})
        self._register(table, config)
        self.error = None
        return True

    def _failed(self, exc: Exception) -> None:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        self.error = reason
        log.warning(
            "Could not re-read the routes config file: %s",
            reason,
            extra={"fields": {"path": self.path}},
        )

    def _register(self, table: RoutingTable, config: RoutesConfig) -> None:
        """bulk_register the mappings, then always set the default (§7.2).

        A route already registered with the same backend is left alone: listeners hear only
        of real changes and its wakers and idle timer stay as they are.
        """
        for server_address, backend in config.mappings.items():
            current = table.get(server_address)
            if current is not None and current.backend == backend:
                continue
            table.put(self.route_factory(server_address, backend))
        current_default = table.default_route
        if current_default is None or current_default.backend != config.default_server:
            route = self.route_factory("", config.default_server)
            table.put_default(route)
        log.info(
            "Loaded routes config file",
            extra={
                "fields": {
                    "path": self.path,
                    "mappings": len(config.mappings),
                    "defaultServer": config.default_server,
                }
            },
        )

    # -- watching --------------------------------------------------------------------------

    def check_watchable(self) -> None:
        """Raise ConfigError when the file's directory cannot be watched (startup check)."""
        directory = self._directory
        if not os.path.isdir(directory):
            raise ConfigError(
                f"could not watch routes config file {self.path}: "
                f"directory {directory} does not exist"
            )

    async def watch(
        self,
        table: RoutingTable,
        *,
        debounce: float | None = None,
        started: asyncio.Event | None = None,
        loaded: Callable[[bool], None] | None = None,
    ) -> None:
        """Watch the file until cancelled; `debounce` seconds (default 5) after the last
        write, load it.

        `started` is set once the watch is in place; `loaded(applied)` is called after each
        debounced load (both for tests and readiness).
        """
        self.check_watchable()
        # Read at call time, so an end-to-end test can shorten it on the module.
        delay = WATCH_DEBOUNCE if debounce is None else debounce
        changed = asyncio.Event()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._pump_changes(changed), name="routes-file-watch")
            # The pump's first step creates the inotify watch before it first suspends, and
            # this sleep(0) lets exactly that step run.
            await asyncio.sleep(0)
            if started is not None:
                started.set()
            while True:
                await changed.wait()
                # Debounce: every further event restarts the timer (upstream's time.AfterFunc).
                while True:
                    changed.clear()
                    try:
                        async with asyncio.timeout(delay):
                            await changed.wait()
                    except TimeoutError:
                        break
                applied = self.load_changes(table)
                if loaded is not None:
                    loaded(applied)

    async def _pump_changes(self, changed: asyncio.Event) -> None:
        """Turn filesystem events for our file into `changed.set()`; retry if the watch fails."""
        directory, name = self._directory, self._name

        def counts(change: Change, path: str) -> bool:
            # Upstream counts Write and Create; a rename over the file arrives as `added`.
            return change != Change.deleted and os.path.basename(path) == name

        delay = _WATCH_RETRY_INITIAL
        while True:
            try:
                async for _ in awatch(
                    directory,
                    watch_filter=counts,
                    recursive=False,
                    step=_WATCH_STEP_MS,
                    debounce=_WATCH_STEP_MS * 20,
                ):
                    changed.set()
                    delay = _WATCH_RETRY_INITIAL
                return  # pragma: no cover - awatch only ends when stopped
            except (OSError, RuntimeError) as exc:
                log.warning(
                    "Watching the routes config file failed; retrying in %.0fs: %s",
                    delay,
                    exc,
                    extra={"fields": {"path": self.path}},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _WATCH_RETRY_MAX)

    # -- saving ----------------------------------------------------------------------------

    def render(self, table: RoutingTable) -> bytes:
        """The whole table as upstream's SaveRoutes writes it (§7.5): compact, keys sorted."""
        default = table.default_route
        document = {
            "default-server": default.backend if default is not None else "",
            "mappings": {key: route.backend for key, route in table.mappings().items()},
        }
        return go_json_bytes(document, sort_keys=True)

    async def save(self, table: RoutingTable) -> bool:
        """Persist the table (after an API change). Never raises; returns success.

        The snapshot is taken now, in the loop; writes run in a thread one at a time, in the
        order of their snapshots, so the file always ends with the latest table.
        """
        data = self.render(table)
        async with self._save_lock:
            try:
                await asyncio.to_thread(self._write, data)
            except OSError as exc:
                log.error(
                    "Could not save the routes config file: %s",
                    exc.strerror or exc,
                    extra={"fields": {"path": self.path}},
                )
                return False
        log.info("Saved routes config", extra={"fields": {"path": self.path}})
        return True

    def save_now(self, table: RoutingTable) -> None:
        """Synchronous save for callers outside the loop; raises OSError."""
        self._write(self.render(table))

    def _write(self, data: bytes) -> None:
        # Write through a symlink to its target, so a symlinked routes file stays a symlink.
        target = os.path.realpath(self.path)
        try:
            _write_atomic(target, data)
        except OSError as exc:
            # A single file bind-mounted into a container cannot be renamed over (EBUSY), and
            # a read-only directory refuses the temporary file (EACCES/EROFS on the directory
            # while the file itself is writable). Fall back to upstream's in-place rewrite
            # rather than never saving.
            if exc.errno not in (errno.EBUSY, errno.EXDEV, errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            if not os.access(target, os.W_OK):
                raise
            if not self._warned_in_place:
                self._warned_in_place = True
                log.warning(
                    "Cannot replace the routes config file atomically (%s); "
                    "rewriting it in place instead",
                    exc.strerror or exc,
                    extra={"fields": {"path": self.path}},
                )
            _write_in_place(target, data)


def _write_atomic(target: str, data: bytes) -> None:
    """Replace `target` with `data` so that readers see the old or the new file, never a mix."""
    directory = os.path.dirname(target) or "."
    try:
        existing: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        existing = None
    temp = os.path.join(directory, f".{os.path.basename(target)}.{secrets.token_hex(6)}.tmp")
    # O_EXCL: never follow or clobber anything already at the temporary name. The umask
    # applies to NEW_FILE_MODE, as it does for upstream's os.WriteFile.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, NEW_FILE_MODE)
    try:
        try:
            if existing is not None:
                os.fchmod(fd, stat.S_IMODE(existing.st_mode))
                if (existing.st_uid, existing.st_gid) != (os.getuid(), os.getgid()):
                    # Only root may give a file away; the mode is kept either way.
                    with contextlib.suppress(PermissionError):
                        os.fchown(fd, existing.st_uid, existing.st_gid)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_directory(directory)


def _write_in_place(target: str, data: bytes) -> None:
    with open(target, "r+b") as file:
        file.truncate(0)
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _fsync_directory(directory: str) -> None:
    """Make the rename durable; some filesystems cannot fsync a directory, which is fine."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
