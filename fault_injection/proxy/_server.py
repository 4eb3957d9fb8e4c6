"""The chaos proxy: an asyncio TCP proxy that applies toxics to real sockets.

::

    proxy = ChaosProxy("127.0.0.1:8002", listen="127.0.0.1:8012", seed=7).start()
    proxy.add_toxic(latency(0.3, jitter=0.05))
    ...
    proxy.stop()

The proxy runs its own event loop in a background thread, so it is usable from
synchronous code, tests and the CLI alike. Toxics are read for every chunk, so
adding or removing one acts on open connections too. Each connection gets an
ordinal; whether a toxic with ``toxicity < 1`` applies to it is a pure function
of the proxy's seed, the toxic's name and that ordinal.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import socket
import struct
import threading
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Final

from ._toxics import DuplicateToxic, Stream, Toxic, UnknownToxic

Address = tuple[str, int]
CHUNK: Final = 65536
_QUEUE: Final = 16
_LINGER_RST: Final = struct.pack("ii", 1, 0)
_CALL_TIMEOUT: Final = 10.0


def parse_address(value: str | Address, *, what: str = "address") -> Address:
    """``"host:port"`` (or a ``(host, port)`` pair) -> ``(host, port)``; ``ValueError`` if malformed."""
    if isinstance(value, tuple):
        host, port = value
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or not port_text.isdigit():
            raise ValueError(f"{what} must look like HOST:PORT, not {value!r}")
        host, port = host.strip("[]") or "127.0.0.1", int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"{what}: port {port} is out of range")
    return host, port


def format_address(address: Address) -> str:
    """``(host, port)`` -> ``"host:port"``."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _StreamState:
    """Per-connection, per-direction state of the toxics (byte counters, jitter source)."""

    __slots__ = ("black_hole", "counted", "rng")

    def __init__(self, seed: int, ident: int, stream: Stream) -> None:
        self.rng = random.Random(f"{seed}:{ident}:{stream}")
        self.counted: dict[str, int] = {}
        self.black_hole: asyncio.TimerHandle | None = None


class _Connection:
    """One proxied connection: two pumps, each a reader feeding a toxic writer."""

    def __init__(
        self,
        proxy: ChaosProxy,
        ident: int,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.proxy, self.ident = proxy, ident
        self.client, self.upstream = client, upstream
        self.acted: set[str] = set()
        self.closed = False
        self._states = {s: _StreamState(proxy.seed, ident, s) for s in ("upstream", "downstream")}

    async def run(self) -> None:
        pumps = (
            self._pump("upstream", self.client[0], self.upstream[1]),
            self._pump("downstream", self.upstream[0], self.client[1]),
        )
        await asyncio.gather(*pumps, return_exceptions=True)
        self.close()

    def close(self) -> None:
        """Close both sides (a normal close: FIN, buffered data flushed)."""
        if self.closed:
            return
        self.closed = True
        for state in self._states.values():
            if state.black_hole is not None:
                state.black_hole.cancel()
        for _, writer in (self.client, self.upstream):
            writer.close()

    def reset(self, stream: Stream) -> None:
        """The peer receiving ``stream`` gets a TCP RST; the other side is closed normally."""
        target = self.client[1] if stream == "downstream" else self.upstream[1]
        sock = target.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        target.transport.abort()
        self.close()

    async def _pump(self, stream: Stream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(_QUEUE)
        reading = asyncio.ensure_future(_read_into(reader, queue))
        try:
            while (item := await queue.get()) is not None:
                if not await self._forward(stream, item[0], item[1], writer):
                    return
            if not self.closed and writer.can_write_eof():
                with contextlib.suppress(OSError, RuntimeError):
                    writer.write_eof()
        except (OSError, RuntimeError):
            self.close()
        finally:
            reading.cancel()

    async def _forward(self, stream: Stream, arrived: float, data: bytes, writer: asyncio.StreamWriter) -> bool:
        if self.closed:
            return False
        toxics = self.proxy._active(stream, self.ident)
        state = self._states[stream]
        for toxic in toxics:
            if not await self._gate(toxic, stream, state):
                return toxic.type == "timeout" and not self.closed
        await self._wait_latency(toxics, state, arrived)
        data, close_after = self._limit(toxics, state, data)
        await self._send(stream, toxics, state, data, writer)
        if close_after:
            self.close()
        return not close_after

    async def _gate(self, toxic: Toxic, stream: Stream, state: _StreamState) -> bool:
        """Toxics that stop the chunk: down, reset_peer, timeout. False = the chunk goes no further."""
        if toxic.type not in ("down", "reset_peer", "timeout"):
            return True
        self._hit(toxic)
        if toxic.type == "down":
            self.close()
        elif toxic.type == "reset_peer":
            await asyncio.sleep(toxic.attr("timeout"))
            self.reset(stream)
        elif state.black_hole is None and toxic.attr("timeout") > 0:
            state.black_hole = asyncio.get_running_loop().call_later(toxic.attr("timeout"), self.close)
        return False

    async def _wait_latency(self, toxics: Iterable[Toxic], state: _StreamState, arrived: float) -> None:
        delay = 0.0
        for toxic in toxics:
            if toxic.type == "latency":
                self._hit(toxic)
                jitter = toxic.attr("jitter") * (2 * state.rng.random() - 1)
                delay += max(0.0, toxic.attr("latency") + jitter)
        wait = arrived + delay - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)

    def _limit(self, toxics: Iterable[Toxic], state: _StreamState, data: bytes) -> tuple[bytes, bool]:
        """Cut ``data`` at the tightest limit_data toxic; True when the connection must close."""
        close_after = False
        for toxic in toxics:
            if toxic.type == "limit_data":
                self._hit(toxic)
                seen = state.counted.get(toxic.name, 0)
                room = max(0, int(toxic.attr("bytes")) - seen)
                data = data[:room]
                state.counted[toxic.name] = seen + len(data)
                close_after = close_after or seen + len(data) >= toxic.attr("bytes")
        return data, close_after

    async def _send(
        self, stream: Stream, toxics: list[Toxic], state: _StreamState, data: bytes, writer: asyncio.StreamWriter
    ) -> None:
        rate = min((t.attr("rate") for t in toxics if t.type == "bandwidth"), default=0.0)
        slicers = [t for t in toxics if t.type == "slicer"]
        for toxic in [t for t in toxics if t.type in ("bandwidth", "slicer")]:
            self._hit(toxic)
        pieces = _slices(data, slicers[0], state.rng) if slicers else [data]
        for index, piece in enumerate(pieces):
            if index and slicers and slicers[0].attr("delay"):
                await asyncio.sleep(slicers[0].attr("delay"))
            for part in _paced(piece, rate):
                if rate:
                    await asyncio.sleep(len(part) / rate)
                if self.closed:
                    return
                writer.write(part)
                await writer.drain()
        self.proxy._count(len(data), stream)

    def _hit(self, toxic: Toxic) -> None:
        if toxic.name not in self.acted:
            self.acted.add(toxic.name)
            self.proxy._record_hit(toxic.name)


def _slices(data: bytes, toxic: Toxic, rng: random.Random) -> list[bytes]:
    average, variation = toxic.attr("average_size"), toxic.attr("size_variation")
    pieces, start = [], 0
    while start < len(data):
        size = max(1, round(average + variation * (2 * rng.random() - 1)))
        pieces.append(data[start : start + size])
        start += size
    return pieces


def _paced(data: bytes, rate: float) -> list[bytes]:
    """``data`` in parts of ~50 ms worth at ``rate`` bytes/s (whole when unpaced)."""
    if not rate:
        return [data]
    size = max(1, int(rate / 20))
    return [data[i : i + size] for i in range(0, len(data), size)]


async def _read_into(reader: asyncio.StreamReader, queue: asyncio.Queue[tuple[float, bytes] | None]) -> None:
    loop = asyncio.get_running_loop()
    try:
        while data := await reader.read(CHUNK):
            await queue.put((loop.time(), data))
    except (OSError, RuntimeError):
        pass
    await queue.put(None)


class ChaosProxy:
    """A TCP proxy from ``listen`` to ``upstream`` with toxics (see :mod:`._toxics`).

    ``start()`` runs it in a background thread with its own event loop and returns
    once it listens; ``stop()`` closes the listener and every connection. All other
    methods are thread-safe and may be called before, during or after running.
    """

    def __init__(
        self,
        upstream: str | Address,
        *,
        listen: str | Address = ("127.0.0.1", 0),
        seed: int = 0,
        name: str = "proxy",
        connect_timeout: float = 5.0,
        toxics: Iterable[Toxic] = (),
    ) -> None:
        self.upstream = parse_address(upstream, what="upstream")
        self._listen = parse_address(listen, what="listen")
        self.seed, self.name, self.connect_timeout = seed, name, connect_timeout
        self._lock = threading.Lock()
        self._toxics: dict[str, Toxic] = {}
        self._snapshot: tuple[Toxic, ...] = ()
        self._hits: dict[str, int] = {}
        self._stats = {"total": 0, "upstream_failures": 0, "bytes_upstream": 0, "bytes_downstream": 0}
        self._ids = itertools.count(1)
        self._conns: set[_Connection] = set()
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        for toxic in toxics:
            self.add_toxic(toxic)

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> ChaosProxy:
        """Listen in a background thread; returns once listening (raises ``OSError`` if it cannot)."""
        if self._thread is not None:
            raise RuntimeError("this proxy is already started")
        ready, failure = threading.Event(), list[BaseException]()
        self._thread = threading.Thread(
            target=self._run, args=(ready, failure), name=f"shockproof-proxy-{self.name}", daemon=True
        )
        self._thread.start()
        ready.wait(_CALL_TIMEOUT)
        if failure:
            self._thread.join(_CALL_TIMEOUT)
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Close the listener and every connection; idempotent."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
            thread.join(_CALL_TIMEOUT)
        self._thread = None

    def __enter__(self) -> ChaosProxy:
        return self if self._thread is not None else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def listen(self) -> Address:
        """Where the proxy listens (the real port once started with port 0)."""
        return self._listen

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- toxics ------------------------------------------------------------
    def add_toxic(self, toxic: Toxic) -> Toxic:
        """Install ``toxic``; its name must be unused (``InvalidToxic`` otherwise)."""
        with self._lock:
            if toxic.name in self._toxics:
                raise DuplicateToxic("name", f"a toxic named {toxic.name!r} already exists")
            self._toxics[toxic.name] = toxic
            self._hits.setdefault(toxic.name, 0)
            self._snapshot = tuple(self._toxics.values())
        if toxic.type == "down":
            self._in_loop(lambda: self._sync_down(toxic))
        return toxic

    def remove_toxic(self, name: str) -> Toxic:
        """Uninstall the toxic called ``name`` (``UnknownToxic`` if there is none)."""
        with self._lock:
            if name not in self._toxics:
                raise UnknownToxic(name)
            toxic = self._toxics.pop(name)
            self._hits.pop(name, None)
            self._snapshot = tuple(self._toxics.values())
        if toxic.type == "down":
            self._in_loop(lambda: self._sync_down(None))
        return toxic

    def clear_toxics(self) -> list[Toxic]:
        """Uninstall every toxic at once; returns what was removed."""
        with self._lock:
            removed = list(self._toxics.values())
            self._toxics.clear()
            self._hits.clear()
            self._snapshot = ()
        if any(t.type == "down" for t in removed):
            self._in_loop(lambda: self._sync_down(None))
        return removed

    def toxics(self) -> list[Toxic]:
        """The installed toxics, oldest first."""
        return list(self._snapshot)

    def hits(self) -> dict[str, int]:
        """For each installed toxic, on how many connections it has acted."""
        with self._lock:
            return dict(self._hits)

    def status(self) -> dict[str, Any]:
        """A JSON-ready picture: addresses, listener state, connection counts, toxics and hits."""
        hits = self.hits()
        with self._lock:
            stats = dict(self._stats)
        return {
            "name": self.name,
            "listen": format_address(self._listen),
            "upstream": format_address(self.upstream),
            "seed": self.seed,
            "running": self.running,
            "accepting": self._server is not None,
            "connections": {"open": len(self._conns), **stats},
            "toxics": [{**t.to_dict(), "hits": hits.get(t.name, 0)} for t in self._snapshot],
        }

    # -- inside the loop ----------------------------------------------------
    def _active(self, stream: Stream, ident: int) -> list[Toxic]:
        return [
            t
            for t in self._snapshot
            if (t.type == "down" or t.stream == stream) and t.applies_to(self.seed, ident)
        ]

    def _record_hit(self, name: str) -> None:
        with self._lock:
            if name in self._hits:
                self._hits[name] += 1

    def _count(self, nbytes: int, stream: Stream) -> None:
        with self._lock:
            self._stats[f"bytes_{stream}"] += nbytes

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        try:
            try:
                loop.run_until_complete(self._open())
                self._loop = loop
            except OSError as exc:
                failure.append(exc)
                return
            finally:
                ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
        finally:
            self._loop = None
            loop.close()

    async def _open(self) -> None:
        if any(t.type == "down" and t.attributes["mode"] == "refuse" for t in self._snapshot):
            # Start "down": bind (to learn the port) then close at once.
            server = await asyncio.start_server(self._handle, *self._listen)
            self._listen = server.sockets[0].getsockname()[:2]
            server.close()
            return
        self._server = await asyncio.start_server(self._handle, *self._listen)
        self._listen = self._server.sockets[0].getsockname()[:2]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for conn in list(self._conns):
            conn.close()
        pending = asyncio.all_tasks() - {asyncio.current_task()}
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _in_loop(self, action: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``action`` in the proxy's loop and wait for it (no-op when not running)."""
        loop = self._loop
        if loop is None or not loop.is_running():
            return
        coro = action()
        try:
            if threading.current_thread() is self._thread:
                loop.create_task(coro)
                return
            future = asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError:  # the loop stopped meanwhile
            coro.close()
            return
        future.result(_CALL_TIMEOUT)

    async def _sync_down(self, added: Toxic | None) -> None:
        """Make the listener match the down toxics; drop connections a new down toxic hits."""
        refuse = any(t.type == "down" and t.attributes["mode"] == "refuse" for t in self._snapshot)
        if refuse and self._server is not None:
            self._server.close()
            self._server = None
        elif not refuse and self._server is None:
            self._server = await asyncio.start_server(self._handle, *self._listen)
        if added is not None:
            for conn in list(self._conns):
                if added.applies_to(self.seed, conn.ident):
                    conn._hit(added)
                    conn.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(next(self._ids), reader, writer)
        except (OSError, RuntimeError, asyncio.CancelledError):
            # Cancelled only by stop(): the task ends quietly (asyncio's stream
            # callback would otherwise report the cancellation as an error).
            writer.close()

    async def _serve(self, ident: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self._stats["total"] += 1
        downs = [t for t in self._active("downstream", ident) if t.type == "down"]
        if downs or self._server is None:
            for toxic in downs:
                self._record_hit(toxic.name)
            writer.close()
            return
        try:
            async with asyncio.timeout(self.connect_timeout):
                upstream = await asyncio.open_connection(*self.upstream)
        except (OSError, TimeoutError):
            with self._lock:
                self._stats["upstream_failures"] += 1
            writer.close()
            return
        conn = _Connection(self, ident, (reader, writer), upstream)
        self._conns.add(conn)
        try:
            await conn.run()
        finally:
            conn.close()
            self._conns.discard(conn)
