"""Commands on a pooled pymemcache client's own socket: the hit path's round trips, and the
pipelined batches.

pymemcache's ``Client.get`` is general (many keys, key checks, prefixes, serde, ``gets``) and reads
the reply a line at a time; a hit here needs keys that the key guard already made valid, and one
``recv`` usually holds the whole reply. Reading it in one piece halves the time of a hit on a
loopback server (``benchmarks/run.py``). A single key's other commands (``set``, ``add``, ``gets``,
``cas``, ``delete``), the parts of a split value and the generation counters stay with pymemcache,
which also makes the connection (:func:`connected`).

A hit is a meta get (memcached >= 1.6), ``mg <key> v t k``: the value and, on the same round trip,
the seconds the server still keeps the item (``t``), which the store turns into the entry's age
on the reader's own clock (an entry's life never depends on the writer's clock).

* :func:`get`: one key, the plain hit. A reply that is not exactly
  ``VA <bytes> t<left> k<key>\\r\\n<data>\\r\\n`` or ``EN k<key>\\r\\n`` raises.
* :func:`get_tagged`: ``mg <entry> v t k`` and ``mg <counter> v`` of each counter in one send, the
  tagged hit.
* :func:`parse_meta`, :func:`parse_tagged`: the replies of those two read from a buffer, without
  I/O: the blocking socket here and the loop's reader of :mod:`.aio` use the same parsers.
* :func:`get_many`, :func:`set_many`, :func:`delete_many`: many keys' ``mg``, ``set`` or
  ``delete`` (:mod:`.batch`), and :func:`incr_many`: ``incr <counter> 1`` for each counter (a tag
  invalidation). Each is sent in batches whose replies are read before the next batch goes (a long
  batch must not fill both directions' buffers at once).

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
#: The same for a batch (:func:`get_many`): ``q`` leaves misses unanswered.
_QUIET_FLAGS = b" v t k q\r\n"
#: Bytes of values :func:`set_many` sends before reading their replies.
_SEND = 1 << 20
_NOT_A_NUMBER = b"CLIENT_ERROR cannot increment"
#: Counters at or above this hold no number this package wrote (see :func:`as_int`).
_TOO_LARGE = 1 << 63


def get(client: Any, key: bytes) -> tuple[bytes, int] | None:
    """``(value, seconds left)`` of ``key`` (a valid memcached key, encoded), or ``None``.

    Seconds left are the server's: how long until it expires the item, ``-1`` for one that never
    expires. One ``mg <key> v t k``; a reply that is not exactly ``VA <bytes> t<left> k<key>\\r\\n
    <data>\\r\\n`` or ``EN k<key>\\r\\n`` raises. Written out (one split of the header, no
    helper calls) for the common case, a whole reply in one ``recv``: it is every hit's path."""
    sock = client.sock
    if sock is None or (KERNEL_TIMEOUTS and sock.gettimeout() is not None):
        sock = connected(client)
    try:
        sock.sendall(b"mg " + key + _META_FLAGS)
        buf = sock.recv(_RECV)
        end = buf.find(b"\r\n")
        if end > 0 and buf[:3] == b"VA ":
            head = buf[:end].split(b" ")
            # VA <bytes> t<left> k<key>: memcached answers the flags in the order they were asked
            if len(head) == 4 and head[3] == b"k" + key and head[2][:1] == b"t":
                start = end + 2
                stop = start + int(head[1])
                if len(buf) == stop + 2 and buf[stop:] == b"\r\n":
                    return buf[start:stop], int(head[2][1:])
        found, buf, pos = _meta_reply(sock, buf, key)  # a miss, a large value, or not a reply
        if pos != len(buf):
            raise MemcacheUnexpectedCloseError(_OUT_OF_STEP)
        return found
    except BaseException:
        client.close()
        raise


class CounterReplies:
    """The counters' part of the last whole tagged reply one caller read, and the values it holds
    (:func:`get_tagged`'s ``seen``): a tagged hit reads the same counters again and again, and the
    same bytes in answer to the same number of commands are the same values, read without parsing.
    ``last`` is replaced whole, so threads sharing one never pair bytes with another's values."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: tuple[int, bytes, list[bytes | None]] = (-1, b"", [])


def get_tagged(
    client: Any, key: bytes, counters: list[bytes], tail: bytes | None = None,
    seen: CounterReplies | None = None,
) -> tuple[tuple[bytes, int] | None, list[bytes | None]]:
    """The tagged hit in one round trip: ``mg <key> v t k`` and ``mg <counter> v`` of each counter
    sent together (``tail``: the counters' commands, :func:`counters_request`, when the caller made
    them already). Returns what :func:`get` returns for ``key``, and each counter's value (``None``
    where missing), in the order of ``counters``: each ``mg`` has exactly one reply, ``VA`` or
    ``EN``, and the replies must end exactly with the last counter's. With ``seen``, a whole reply
    whose counters' part is the last one's gives the last one's values list (the same object:
    callers only read it)."""
    sock = client.sock
    if sock is None or (KERNEL_TIMEOUTS and sock.gettimeout() is not None):
        sock = connected(client)
    try:
        if tail is None:
            tail = counters_request(counters)
        sock.sendall(b"mg " + key + _META_FLAGS + tail)
        buf = sock.recv(_RECV)
        whole = _whole_tagged(buf, key, len(counters), seen)
        if whole is not None:
            return whole
        request = (key, len(counters))
        while True:  # a miss, a large value, a reply in pieces, or not a reply: the careful way
            try:
                found, end = parse_tagged(buf, request)
            except Incomplete as short:
                buf = _read_rest(sock, buf, short.need) if short.need else buf + _more(sock)
                continue
            if end != len(buf):
                raise MemcacheUnexpectedCloseError(_OUT_OF_STEP_MANY)
            return found
    except BaseException:
        client.close()  # never leave unread bytes for the next command
        raise


def counters_request(counters: list[bytes]) -> bytes:
    """The commands :func:`get_tagged` sends for ``counters``: ``mg <counter> v`` each."""
    return b"".join([b"mg " + counter + b" v\r\n" for counter in counters])


def _whole_tagged(
    buf: bytes, key: bytes, counters: int, seen: CounterReplies | None = None
) -> tuple[tuple[bytes, int], list[bytes | None]] | None:
    """The tagged hit's reply when ``buf`` holds all of it and its entry is a hit (the common
    case), its counters' part read with one split; ``None``: read it the careful way. A split that
    misreads (a value holding ``\\r\\n``) gives a piece shorter than its stated length, which is
    refused here, so what this returns is what the careful reading returns."""
    end = buf.find(b"\r\n")
    if end < 0 or buf[:3] != b"VA ":
        return None
    head = buf[:end].split(b" ")
    if len(head) != 4 or head[3] != b"k" + key or head[2][:1] != b"t":
        return None
    start = end + 2
    stop = start + int(head[1])
    if buf[stop : stop + 2] != b"\r\n":
        return None
    rest = buf[stop + 2 :]
    if seen is not None:
        known = seen.last
        if known[1] == rest and known[0] == counters:  # the very bytes read last time: its values
            return (buf[start:stop], int(head[2][1:])), known[2]
    pieces = rest.split(b"\r\n")  # per counter: VA <bytes>, <value>; or EN. Then b""
    last = len(pieces) - 1
    if pieces[last]:
        return None
    values: list[bytes | None] = []
    i = 0
    for _ in range(counters):
        if i >= last:
            return None
        line = pieces[i]
        if line == b"EN":
            values.append(None)
            i += 1
        elif (
            i + 1 < last and line[:3] == b"VA " and line[3:].isdigit()
            and int(line[3:]) == len(pieces[i + 1])
        ):
            values.append(pieces[i + 1])
            i += 2
        else:
            return None
    if i != last:
        return None
    if seen is not None:
        seen.last = (counters, rest, values)
    return (buf[start:stop], int(head[2][1:])), values


def tagged_request(key: bytes, tail: bytes) -> bytes:
    """The bytes of the tagged hit's request: ``mg <key> v t k``, then ``tail``, the counters'
    commands (:func:`counters_request`)."""
    return b"mg " + key + _META_FLAGS + tail


def parse_tagged(
    buf: bytes, request: tuple[bytes, int]
) -> tuple[tuple[tuple[bytes, int] | None, list[bytes | None]], int]:
    """The reply to :func:`tagged_request` of ``request`` (``(key, number of counters)``) at the
    start of ``buf``, read without I/O: ``((what parse_meta returns, each counter's value or
    None), where it ends)``. Raises :class:`Incomplete` as :func:`parse_meta` does."""
    key, counters = request
    entry, pos = parse_meta(buf, key)
    values, end = parse_counters(buf, pos, counters)
    return (entry, values), end


def parse_counters(buf: bytes, pos: int, counters: int) -> tuple[list[bytes | None], int]:
    """The replies to ``counters`` commands ``mg <counter> v`` at ``pos`` in ``buf``, read without
    I/O: ``(each value, None where missing; where the replies end)``. Each has exactly one reply,
    ``VA <bytes>`` and the value, or ``EN``. Raises :class:`Incomplete` when ``buf`` holds only part
    of them, and what :func:`refused` raises for a line that is no counter's reply."""
    values: list[bytes | None] = []
    for _ in range(counters):
        end = buf.find(b"\r\n", pos)
        if end < 0:
            raise Incomplete(0)
        line = buf[pos:end]
        if line == b"EN":
            values.append(None)
            pos = end + 2
            continue
        if line[:3] != b"VA ":
            refused(line)
        if not line[3:].isdigit():  # (an entry's reply, ``VA <bytes> t.. k..``: not a counter's)
            raise MemcacheUnexpectedCloseError(_OUT_OF_STEP_MANY)
        start = end + 2
        stop = start + int(line[3:])
        if len(buf) < stop + 2:
            raise Incomplete(stop + 2)
        if buf[stop : stop + 2] != b"\r\n":
            raise MemcacheUnexpectedCloseError(_OUT_OF_STEP_MANY)
        values.append(buf[start:stop])
        pos = stop + 2
    return values, pos


class Incomplete(Exception):
    """The buffer holds only the start of a reply: ``need`` is the length it must reach first
    (0: the first line is not complete yet, any more bytes may do)."""

    def __init__(self, need: int = 0) -> None:
        self.need = need


def parse_meta(buf: bytes, key: bytes) -> tuple[tuple[bytes, int] | None, int]:
    """The reply to ``mg <key> v t k`` at the start of ``buf``, read without I/O (the blocking
    socket of :func:`get` and the loop's reader of :mod:`.aio` both use it): ``(value and
    seconds left, or None; where the next reply starts in buf)``. Raises :class:`Incomplete`
    when ``buf`` holds only part of the reply, and what :func:`refused` raises for a reply that is
    not exactly ``VA <bytes> t<left> k<key>\\r\\n<data>\\r\\n`` or ``EN k<key>\\r\\n``."""
    end = buf.find(b"\r\n")
    if end < 0:
        raise Incomplete(0)
    head = buf[:end].split(b" ")
    if len(head) == 4 and head[0] == b"VA" and head[2][:1] == b"t" and head[3] == b"k" + key:
        # the flags in the order asked (memcached's): the hit's case, checked as the loop below does
        start = end + 2
        stop = start + int(head[1])
        if len(buf) < stop + 2:
            raise Incomplete(stop + 2)
        if buf[stop : stop + 2] != b"\r\n":
            raise MemcacheUnexpectedCloseError(_OUT_OF_STEP)
        return (buf[start:stop], int(head[2][1:])), stop + 2
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


def get_many(client: Any, keys: list[bytes]) -> dict[bytes, tuple[bytes, int]]:
    """``{key: (value, seconds left)}`` of the ``keys`` found (valid, encoded, no duplicates), in
    one round trip per :data:`BATCH` keys: ``mg <key> v t k q`` for each (``q``: a miss says
    nothing) and ``mn``, whose ``MN`` ends the replies. Each reply must name a key of the batch,
    in the order asked, and ``MN`` must end what was received; anything else raises."""
    sock = connected(client)
    found: dict[bytes, tuple[bytes, int]] = {}
    try:
        for first in range(0, len(keys), BATCH):
            batch = keys[first : first + BATCH]
            order = {key: i for i, key in enumerate(batch)}
            sock.sendall(b"".join([b"mg " + key + _QUIET_FLAGS for key in batch]) + b"mn\r\n")
            buf, pos, last = sock.recv(_RECV), 0, -1
            while True:
                end = buf.find(b"\r\n", pos)
                while end < 0:
                    buf = buf[pos:] + _more(sock)
                    pos, end = 0, buf.find(b"\r\n")
                if end - pos == 2 and buf[pos:end] == b"MN":
                    if end + 2 != len(buf):
                        raise MemcacheUnexpectedCloseError(_OUT_OF_STEP_MANY)
                    break
                head = buf[pos:end].split(b" ")
                if head[0] != b"VA":
                    refused(buf[pos:end])
                if len(head) != 4 or head[2][:1] != b"t" or head[3][:1] != b"k":
                    raise MemcacheUnexpectedCloseError(_OUT_OF_STEP_MANY)
                key = head[3][1:]
                at = order.get(key, -1)
                if at <= last:  # another batch's, or out of order: not this one's reply
                    raise MemcacheUnexpectedCloseError(_OUT_OF_STEP_MANY)
                last = at
                start = end + 2
                stop = start + int(head[1])
                if len(buf) < stop + 2:
                    buf = _read_rest(sock, buf, stop + 2)
                if buf[stop : stop + 2] != b"\r\n":
                    raise MemcacheUnexpectedCloseError(_OUT_OF_STEP_MANY)
                found[key] = (buf[start:stop], int(head[2][1:]))
                pos = stop + 2
    except BaseException:
        client.close()
        raise
    return found


def set_many(client: Any, items: list[tuple[bytes, bytes, int]]) -> list[bytes | None]:
    """``set <key> 0 <expire> <bytes>`` of each ``(key, value, expire)``, pipelined (batches of at
    most :data:`BATCH` items or about :data:`_SEND` bytes, each read before the next goes). Returns,
    per item, ``None`` when stored, else the server's refusal (``SERVER_ERROR object too large``,
    ``NOT_STORED``). Replies are asked for: with ``noreply`` memcached 1.6 drops such refusals."""
    sock = connected(client)
    results: list[bytes | None] = []
    try:
        first = 0
        while first < len(items):
            parts: list[bytes] = []
            size, last = 0, first
            while last < len(items) and last - first < BATCH and (size < _SEND or last == first):
                key, value, expire = items[last]
                parts.append(b"set %b 0 %d %d\r\n%b\r\n" % (key, expire, len(value), value))
                size += len(value) + len(key) + 32
                last += 1
            sock.sendall(b"".join(parts))
            buf, pos, done = b"", 0, first
            while done < last:
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    buf, pos = buf[pos:] + _more(sock), 0
                    continue
                line = buf[pos:end]
                if line == b"STORED":
                    results.append(None)
                elif line == b"NOT_STORED" or line.startswith(b"SERVER_ERROR"):
                    results.append(line)  # this item only: the server read its bytes
                else:
                    refused(line)
                pos, done = end + 2, done + 1
            if pos != len(buf):
                raise MemcacheUnexpectedCloseError(_OUT_OF_STEP_MANY)
            first = last
    except BaseException:
        client.close()
        raise
    return results


def delete_many(client: Any, keys: list[bytes]) -> None:
    """``delete <key> noreply`` of each key and ``mn``: the server has made every delete when its
    ``MN`` arrives (one connection's commands run in order), in one round trip per :data:`BATCH`
    keys. A delete has no refusal to report (a missing key is as good as deleted), so nothing but
    ``MN`` may come back; anything else raises."""
    sock = connected(client)
    try:
        for first in range(0, len(keys), BATCH):
            batch = keys[first : first + BATCH]
            sock.sendall(b"".join([b"delete " + key + b" noreply\r\n" for key in batch]) + b"mn\r\n")
            buf = sock.recv(_RECV)
            while len(buf) < 4 and buf == b"MN\r\n"[: len(buf)]:
                buf += _more(sock)
            if buf != b"MN\r\n":
                end = buf.find(b"\r\n")
                refused(buf[: end if end >= 0 else len(buf)])
    except BaseException:
        client.close()
        raise


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
