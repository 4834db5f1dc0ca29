"""A TCP proxy for fault tests: the link between a client and a real server, breakable at run time.

``Proxy(target)`` listens on a free 127.0.0.1 port (``.address``, "127.0.0.1:PORT") and forwards
bytes both ways between each client and its own connection to ``target``. Its ``mode`` can be
changed at any time:

* ``"pass"``: bytes flow both ways;
* ``"drop"``: a link dropping traffic: connections stay open and new ones are accepted, but every
  byte is silently discarded, in both directions (callers wait for their own timeout);
* ``"reset"``: every connection is reset (RST) and new ones are refused (nothing listens on the
  port until the mode is set back to ``"pass"`` or ``"drop"``, which listens on the same port again).

Threads are daemons; ``close()`` stops everything (the ``proxy`` fixtures of the tests call it).
Counters (``accepted``, ``forwarded``, ``dropped`` bytes, ``resets``) show that traffic really went
through the proxy and really was dropped.
"""

from __future__ import annotations

import socket
import struct
import threading
from typing import Literal

Mode = Literal["pass", "drop", "reset"]
MODES: tuple[Mode, ...] = ("pass", "drop", "reset")


def _parse(address: str | tuple[str, int]) -> tuple[str, int]:
    if isinstance(address, tuple):
        return address
    host, _, port = address.rpartition(":")
    return host, int(port)


def _abort(sock: socket.socket) -> None:
    """Close ``sock`` with a RST (linger 0), waking any thread blocked reading it."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RD)  # wakes a recv() blocked in another thread; sends nothing
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _close_listener(sock: socket.socket) -> None:
    """Stop listening at once: shutdown() wakes an accept() blocked in another thread (a bare
    close() would leave the port listening until that accept() returns)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class _Link:
    """One client connection and its upstream connection; two pump threads."""

    def __init__(self, proxy: Proxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self._closed = False
        self._lock = threading.Lock()

    def start(self) -> None:
        for src, dst, name in ((self.client, self.upstream, "up"), (self.upstream, self.client, "down")):
            threading.Thread(target=self._pump, args=(src, dst), name=f"proxy-{name}", daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        proxy = self.proxy
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if proxy.mode == "pass":
                    dst.sendall(data)
                    proxy.forwarded += len(data)
                else:  # "drop" (a "reset" link is being closed anyway)
                    proxy.dropped += len(data)
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _abort(self.client)
        _abort(self.upstream)
        self.proxy._forget(self)


class Proxy:
    """See the module docstring. ``Proxy("127.0.0.1:11211")``; ``proxy.mode = "drop"``."""

    def __init__(self, target: str | tuple[str, int], mode: Mode = "pass") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.target = _parse(target)
        self._mode: Mode = mode
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._listener: socket.socket | None = None
        self._stopped = threading.Event()
        self.accepted = 0
        self.refused_upstream = 0
        self.resets = 0
        self.forwarded = 0
        self.dropped = 0
        self.port = 0
        self._listen()
        self.address = f"127.0.0.1:{self.port}"
        self._acceptor = threading.Thread(target=self._accept_loop, name="proxy-accept", daemon=True)
        self._acceptor.start()

    # mode ----------------------------------------------------------------------------------------
    @property
    def mode(self) -> Mode:
        return self._mode

    @mode.setter
    def mode(self, mode: Mode) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        with self._lock:
            if self._stopped.is_set():
                return
            self._mode = mode
            if mode == "reset":
                self.resets += 1
                listener, self._listener = self._listener, None
                links = list(self._links)
            else:
                listener, links = None, []
                if self._listener is None:
                    self._listen()
        if listener is not None:
            _close_listener(listener)  # new connections are refused from now on
        for link in links:
            link.close()

    def _listen(self) -> None:
        """Listen on ``self.port`` (a free one the first time). Called with the lock held or at init."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(128)
        sock.settimeout(0.05)  # the accept loop notices a mode change or close() quickly
        self.port = sock.getsockname()[1]
        self._listener = sock

    # connections ---------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            listener = self._listener
            if listener is None:
                self._stopped.wait(0.02)
                continue
            try:
                client, _ = listener.accept()
            except OSError:  # a timeout (look at the mode again), or closed by a "reset" / close()
                continue
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.target, timeout=2)
                upstream.settimeout(None)
            except OSError:
                self.refused_upstream += 1
                _abort(client)  # the server itself is down: the client sees its connection reset
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._stopped.is_set() or self._mode == "reset":
                    _abort(client)
                    _abort(upstream)
                    continue
                self.accepted += 1
                link = _Link(self, client, upstream)
                self._links.add(link)
            link.start()

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)

    @property
    def connections(self) -> int:
        """Client connections open through the proxy right now."""
        return len(self._links)

    def close(self) -> None:
        """Stop listening and reset every connection; the threads end by themselves."""
        with self._lock:
            self._stopped.set()
            listener, self._listener = self._listener, None
            links = list(self._links)
        if listener is not None:
            _close_listener(listener)
        for link in links:
            link.close()
        self._acceptor.join(timeout=2)

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Proxy {self.address} -> {self.target[0]}:{self.target[1]} mode={self._mode}>"
