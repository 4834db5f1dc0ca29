"""The hit path's one round trip: ``get <key>`` on a pooled pymemcache client's socket.

pymemcache's ``Client.get`` is general (many keys, key checks, prefixes, serde, ``gets``) and reads
the reply a line at a time; a hit here needs one key that the key guard already made valid, and
one ``recv`` usually holds the whole reply. Reading it in one piece halves the time of a hit on a
loopback server (``benchmarks/run.py``). Everything else (sets, counters, ``get_many``) stays with
pymemcache, which also makes the connection: a client not yet connected does its first ``get``
through pymemcache itself.

A reply that is not exactly ``VALUE <key> <flags> <bytes>\\r\\n<data>\\r\\nEND\\r\\n`` or
``END\\r\\n`` raises and closes the socket, as pymemcache does on any error, so a connection is
never left with unread bytes that the next command would take for its own reply.
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
_RECV = 65536
_CLOSED = "the server closed the connection"
_OUT_OF_STEP = "a reply that does not answer this get (connection dropped)"
_END = b"END\r\n"
_TAIL = b"\r\nEND\r\n"


def get(client: Any, key: bytes) -> bytes | None:
    """The value stored under ``key`` (a valid memcached key, encoded), or ``None``."""
    sock = client.sock
    if sock is None:
        return client.get(key)  # connects (pymemcache owns the connection settings)
    if sock.gettimeout() is not None and KERNEL_TIMEOUTS:
        kernel_timeouts(sock)
    try:
        sock.sendall(b"get " + key + b"\r\n")
        buf = sock.recv(_RECV)
        end = buf.find(b"\r\n")
        while end < 0:
            more = sock.recv(_RECV)
            if not more:
                raise MemcacheUnexpectedCloseError(_CLOSED)
            buf += more
            end = buf.find(b"\r\n")
        if end == 3 and buf == _END:
            return None
        head = buf[:end].split(b" ")
        if head[0] != b"VALUE" or len(head) < 4 or head[1] != key:
            _refused(buf[:end])
        size = int(head[3])
        start = end + 2
        need = start + size + 7
        if len(buf) < need:
            buf = _read_rest(sock, buf, need)
        if len(buf) != need or buf[start + size : need] != _TAIL:
            raise MemcacheUnexpectedCloseError(_OUT_OF_STEP)
        return buf[start : start + size]
    except BaseException:
        client.close()
        raise


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


def _refused(line: bytes) -> None:
    """Raise what pymemcache raises for an error line (``ERROR``, ``CLIENT_ERROR``, ...)."""
    text = line.decode("ascii", "replace")
    if line.startswith(b"SERVER_ERROR"):
        raise MemcacheServerError(text)
    if line.startswith(b"CLIENT_ERROR"):
        raise MemcacheClientError(text)
    if line.startswith(b"ERROR"):
        raise MemcacheUnknownCommandError(text)
    raise MemcacheUnexpectedCloseError(_OUT_OF_STEP)
