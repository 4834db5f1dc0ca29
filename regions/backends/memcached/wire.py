"""Commands on a pooled pymemcache client's own socket: the hit path's round trips.

pymemcache's ``Client.get`` is general (many keys, key checks, prefixes, serde, ``gets``) and reads
the reply a line at a time; a hit here needs keys that the key guard already made valid, and one
``recv`` usually holds the whole reply. Reading it in one piece halves the time of a hit on a
loopback server (``benchmarks/run.py``). Everything else (sets, counters) stays with pymemcache,
which also makes the connection (:func:`connected`).

A hit is a meta get (memcached >= 1.6), ``mg <key> v t k``: the value and, on the same round trip,
the seconds the server still keeps the item (``t``), which the namespace manager turns into the
entry's age on the reader's own clock (an entry's life never depends on the writer's clock).

* :func:`get`: one key, the plain hit. A reply that is not exactly
  ``VA <bytes> t<left> k<key>\\r\\n<data>\\r\\n`` or ``EN k<key>\\r\\n`` raises.
* :func:`get_tagged`: ``mg <entry> v t k`` and ``get <counter> ...`` in one send, the tagged hit.
* :func:`parse_meta`, :func:`parse_tagged`: the replies of those two read from a buffer, without
  I/O: the blocking socket here and the asyncio protocol of :mod:`.aio` use the same parsers.
* :func:`incr_many`: ``incr <counter> 1`` for each counter (a tag invalidation), sent in batches
  whose replies are read before the next batch goes (a long batch must not fill both directions'
  buffers at once).

Any error or reply out of step closes the socket, as pymemcache does, so a connection is never
left with unread bytes that the next command would take for its own reply.
"""

from __future__ import annotations

import socket
import struct
import sys
from typing import Any

from pymemcache.exceptions import (
    MemcacheClientError,
    MemcacheServerError,
    MemcacheUnexpectedCloseError,
    MemcacheUnknownCommandError,
)

#: Linux's ``struct timeval`` is two native longs; elsewhere Python's own timeouts stay.
KERNEL_TIMEOUTS = sys.platform.startswith("linux") and hasattr(socket, "SO_RCVTIMEO")
#: Commands :func:`incr_many` sends before reading their replies.
BATCH = 256
_RECV = 65536
_CLOSED = "the server closed the connection"
_OUT_OF_STEP = "a reply that does not answer this get (connection dropped)"
_OUT_OF_STEP_MANY = "a reply that does not answer this command (connection dropped)"
#: ``mg``'s flags after the key: the value, its seconds left, the key echoed (a reply for another
#: key is never taken for this one's).
_META_FLAGS = b" v t k\r\n"
_NOT_A_NUMBER = b"CLIENT_ERROR cannot increment"
#: Counters at or above this hold no number this package wrote (see :func:`as_int`).
_TOO_LARGE = 1 << 63


def get(client: Any, key: bytes) -> tuple[bytes, int] | None:
    """``(value, seconds left)`` of ``key`` (a valid memcached key, encoded), or ``None``.

    Seconds left are the server's: how long until it expires the item, ``-1`` for one that never
    expires. One ``mg <key> v t k``; a reply that is not exactly ``VA <bytes> t<left> k<key>\\r\\n
    <data>\\r\\n`` or ``EN k<key>\\r\\n`` raises."""
    sock = connected(client)
    try:
        sock.sendall(b"mg " + key + _META_FLAGS)
        buf = sock.recv(_RECV)
        found, buf, pos = _meta_reply(sock, buf, key)
        if pos != len(buf):
            raise MemcacheUnexpectedCloseError(_OUT_OF_STEP)
        return found
    except BaseException:
        client.close()
        raise


def get_tagged(
    client: Any, key: bytes, counters: list[bytes]
) -> tuple[tuple[bytes, int] | None, dict[bytes, bytes]]:
    """The tagged hit in one round trip: ``mg <key> v t k`` and ``get <counter> ...`` sent together.
    Returns what :func:`get` returns for ``key``, and ``{counter: value}`` of the counters found."""
    sock = connected(client)
    try:
        sock.sendall(tagged_request(key, counters))
        entry, buf, pos = _meta_reply(sock, sock.recv(_RECV), key)
        if not counters:
            if pos != len(buf):
                raise MemcacheUnexpectedCloseError(_OUT_OF_STEP_MANY)
            return entry, {}
        while True:
            try:
                found, end = parse_values(buf, pos, counters)
            except Incomplete:
                buf, pos = buf[pos:] + _more(sock), 0
                continue
            if end != len(buf):
                raise MemcacheUnexpectedCloseError(_OUT_OF_STEP_MANY)
            return entry, found
    except BaseException:
        client.close()  # never leave unread bytes for the next command
        raise


def tagged_request(key: bytes, counters: list[bytes]) -> bytes:
    """The bytes of the tagged hit's request: ``mg <key> v t k``, then ``get <counter> ...``."""
    request = b"mg " + key + _META_FLAGS
    if counters:
        request += b"get " + b" ".join(counters) + b"\r\n"
    return request


def parse_tagged(
    buf: bytes, request: tuple[bytes, list[bytes]]
) -> tuple[tuple[tuple[bytes, int] | None, dict[bytes, bytes]], int]:
    """The reply to :func:`tagged_request` of ``request`` (``(key, counters)``) at the start of
    ``buf``, read without I/O: ``((what parse_meta returns, {counter: value}), where it ends)``.
    Raises :class:`Incomplete` as :func:`parse_meta` does."""
    key, counters = request
    entry, pos = parse_meta(buf, key)
    if not counters:
        return (entry, {}), pos
    found, end = parse_values(buf, pos, counters)
    return (entry, found), end


def parse_values(buf: bytes, pos: int, counters: list[bytes]) -> tuple[dict[bytes, bytes], int]:
    """The reply to ``get <counter> ...`` at ``pos`` in ``buf``, read without I/O: ``({counter:
    value} of those found, where the reply ends)``. Raises :class:`Incomplete` when ``buf`` holds
    only part of it, and what :func:`refused` raises for a line that is no ``VALUE`` of a counter
    asked for."""
    found: dict[bytes, bytes] = {}
    while True:
        end = buf.find(b"\r\n", pos)
        if end < 0:
            raise Incomplete(0)
        if end - pos == 3 and buf[pos:end] == b"END":
            return found, end + 2
        head = buf[pos:end].split(b" ")
        if head[0] != b"VALUE" or len(head) < 4 or head[1] not in counters:
            refused(buf[pos:end])
        start = end + 2
        stop = start + int(head[3])
        if len(buf) < stop + 2:
            raise Incomplete(stop + 2)
        if buf[stop : stop + 2] != b"\r\n":
            raise MemcacheUnexpectedCloseError(_OUT_OF_STEP_MANY)
        found[head[1]] = buf[start:stop]
        pos = stop + 2


class Incomplete(Exception):
    """The buffer holds only the start of a reply: ``need`` is the length it must reach first
    (0: the first line is not complete yet, any more bytes may do)."""

    def __init__(self, need: int = 0) -> None:
        self.need = need


def parse_meta(buf: bytes, key: bytes) -> tuple[tuple[bytes, int] | None, int]:
    """The reply to ``mg <key> v t k`` at the start of ``buf``, read without I/O (the blocking
    socket of :func:`get` and the asyncio protocol of :mod:`.aio` both use it): ``(value and
    seconds left, or None; where the next reply starts in buf)``. Raises :class:`Incomplete`
    when ``buf`` holds only part of the reply, and what :func:`refused` raises for a reply that is
    not exactly ``VA <bytes> t<left> k<key>\\r\\n<data>\\r\\n`` or ``EN k<key>\\r\\n``."""
    end = buf.find(b"\r\n")
    if end < 0:
        raise Incomplete(0)
    head = buf[:end].split(b" ")
    if head[0] == b"EN":  # a miss: ``EN k<key>`` (1.6.18 echoes the key), or ``EN``
        if head[1:] != [b"k" + key] and len(head) > 1:
            raise MemcacheUnexpectedCloseError(_OUT_OF_STEP)
        return None, end + 2
    if head[0] != b"VA" or len(head) != 4:
        refused(buf[:end])
    left: int | None = None
    echoed: bytes | None = None
    for flag in head[2:]:
        if flag[:1] == b"t":
            left = int(flag[1:])
        elif flag[:1] == b"k":
            echoed = flag[1:]
    if left is None or echoed != key:
        raise MemcacheUnexpectedCloseError(_OUT_OF_STEP)
    start = end + 2
    stop = start + int(head[1])
    if len(buf) < stop + 2:
        raise Incomplete(stop + 2)
    if buf[stop : stop + 2] != b"\r\n":
        raise MemcacheUnexpectedCloseError(_OUT_OF_STEP)
    return (buf[start:stop], left), stop + 2


def _meta_reply(sock: Any, buf: bytes, key: bytes) -> tuple[tuple[bytes, int] | None, bytes, int]:
    """:func:`parse_meta` on ``buf``, receiving more from ``sock`` until the reply is whole:
    ``(value and seconds left, or None; the buffer; where the next reply starts in it)``."""
    while True:
        try:
            found, pos = parse_meta(buf, key)
        except Incomplete as short:
            buf = _read_rest(sock, buf, short.need) if short.need else buf + _more(sock)
            continue
        return found, buf, pos


def incr_many(client: Any, keys: list[bytes]) -> list[bytes]:
    """``incr <key> 1`` for each key; a key that is missing stays missing (``NOT_FOUND``).
    Returns the keys that hold no number (written by something else), which could not be bumped:
    the caller replaces them. Such a key never stops the bump of the keys after it."""
    sock = _socket(client)
    damaged: list[bytes] = []
    while sock is None and keys:  # connects through pymemcache's own incr
        try:
            client.incr(keys[0].decode(), 1, noreply=False)
        except MemcacheClientError as exc:
            if not not_a_number(exc):
                raise
            damaged.append(keys[0])  # (pymemcache closed the connection: the next key makes one)
        keys = keys[1:]
        sock = _socket(client)
    try:
        for first in range(0, len(keys), BATCH):
            batch = keys[first : first + BATCH]
            sock.sendall(b"".join(b"incr " + key + b" 1\r\n" for key in batch))
            buf, pos, done = b"", 0, 0
            while done < len(batch):
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    buf, pos = buf[pos:] + _more(sock), 0
                    continue
                line = buf[pos:end]
                if line.startswith(_NOT_A_NUMBER):
                    damaged.append(batch[done])
                elif not (line.isdigit() or line == b"NOT_FOUND"):
                    refused(line)
                pos, done = end + 2, done + 1
            if pos != len(buf):
                raise MemcacheUnexpectedCloseError(_OUT_OF_STEP_MANY)
    except BaseException:
        client.close()
        raise
    return damaged


def as_int(raw: Any) -> int | None:
    """A counter's value as memcached returns it, or ``None`` when it holds no number: only digits
    (``incr`` pads a shorter result with spaces), below 2**63. Python's ``int()`` takes more (a
    sign, ``_``, a leading space) that ``incr`` refuses, and a value planted near 2**64 would wrap
    to 0 at the next ``incr``: both are read as no number, and replaced."""
    if type(raw) is int:
        return raw if 0 <= raw < _TOO_LARGE else None
    if not isinstance(raw, bytes):
        return None
    if not raw.isdigit():
        raw = raw.rstrip(b" ")
        if not raw.isdigit():
            return None
    if len(raw) > 19:  # at least 10**19 (and ``int()`` of thousands of digits raises)
        return None
    value = int(raw)
    return value if value < _TOO_LARGE else None


def not_a_number(exc: BaseException) -> bool:
    """Whether ``exc`` is memcached's answer to ``incr`` of a value that holds no number."""
    return isinstance(exc, MemcacheClientError) and "non-numeric" in str(exc)


def kernel_timeouts(sock: socket.socket) -> None:
    """Let the kernel enforce the socket's timeout (``SO_RCVTIMEO`` / ``SO_SNDTIMEO``) on a
    blocking socket. A Python-level timeout makes every ``send`` and ``recv`` a ``poll`` first:
    two more system calls per hit, about a tenth of a loopback GET. A call that times out now
    raises ``BlockingIOError`` (an ``OSError``, as ``TimeoutError`` is) after the same time."""
    timeout = sock.gettimeout()
    if timeout is None:
        return
    seconds = int(timeout)
    value = struct.pack("ll", seconds, int((timeout - seconds) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
    sock.settimeout(None)


def refused(line: bytes) -> None:
    """Raise what pymemcache raises for an error line (``ERROR``, ``CLIENT_ERROR``, ...)."""
    text = line.decode("ascii", "replace")
    if line.startswith(b"SERVER_ERROR"):
        raise MemcacheServerError(text)
    if line.startswith(b"CLIENT_ERROR"):
        raise MemcacheClientError(text)
    if line.startswith(b"ERROR"):
        raise MemcacheUnknownCommandError(text)
    raise MemcacheUnexpectedCloseError(_OUT_OF_STEP)


def connected(client: Any) -> Any:
    """``client``'s socket, connected first when it is not (by pymemcache, which owns the
    connection settings), with kernel timeouts."""
    if client.sock is None:
        client._connect()  # noqa: SLF001 - pymemcache's own connect (timeouts, TLS, keepalive)
    return _socket(client)


def _socket(client: Any) -> Any:
    sock = client.sock
    if sock is not None and sock.gettimeout() is not None and KERNEL_TIMEOUTS:
        kernel_timeouts(sock)
    return sock


def _read_rest(sock: Any, buf: bytes, need: int) -> bytes:
    """Receive a large value into one buffer (no quadratic concatenation)."""
    out = bytearray(need)
    out[: len(buf)] = buf
    got = len(buf)
    with memoryview(out) as view:  # released before ``out`` is, even on an exception
        while got < need:
            n = sock.recv_into(view[got:], need - got)
            if not n:
                raise MemcacheUnexpectedCloseError(_CLOSED)
            got += n
    return bytes(out)


def _more(sock: Any) -> bytes:
    data = sock.recv(_RECV)
    if not data:
        raise MemcacheUnexpectedCloseError(_CLOSED)
    return data
