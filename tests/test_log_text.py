"""What the log is told: never a cached function's arguments, and never text from a server or a
folder copied raw (control characters could forge log lines or drive the terminal reading them).

* A rejected entry's line names the function's namespace and a short keyed digest of the key.
* Text from outside the process (an exception's message, a server's answer) is escaped and cut
  (:func:`regions.throttle.loggable`) wherever a throttled warning builds its line.
"""

from __future__ import annotations

import logging
import pickle
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from pymemcache.client.base import Client

from regions.backends.memcached.entry_format import MAGIC
from regions.keys import encode
from regions.signing import Signer
from regions.throttle import LOG_TEXT_LIMIT, loggable

PLANTED = "\x1b[31mplanted\nWARNING:regions:a forged line\r"


def regions_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "regions"]


def assert_clean(line: str) -> None:
    """One printable line: no ESC, no line break, nothing unprintable."""
    assert line.isprintable(), repr(line)


# rejected entries -------------------------------------------------------------------------------
def test_a_rejected_entry_is_logged_by_function_and_key_digest_never_its_arguments(
    region_config: Any, make_manager: Any, caplog: pytest.LogCaptureFixture
) -> None:
    manager = make_manager({"r": region_config("file")})
    region = manager["r"]

    @manager.region("r")
    def profile(email: str) -> str:
        return email.upper()

    email = "alice.private@example.com"
    path = Path(profile.cache_key(email))  # a file region's cache key is the entry's path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not an entry")
    with caplog.at_level(logging.WARNING, logger="regions"):
        assert profile(email) == email.upper()
    assert region.stats()["rejected"] >= 1
    [line] = [m for m in regions_lines(caplog) if "rejected" in m]
    assert "alice" not in line and "example.com" not in line, line
    assert f"{profile.__module__}.{profile.__qualname__}" in line, line  # which function
    digest = region.store.signer.key_digest(encode(email))
    assert len(digest) == 12 and digest in line, line


def test_the_key_digest_is_keyed_and_stable() -> None:
    one, other = Signer("a" * 32), Signer("b" * 32)
    assert one.key_digest("s3:abc") == Signer("a" * 32).key_digest("s3:abc")  # every process alike
    assert one.key_digest("s3:abc") != other.key_digest("s3:abc")  # unguessable without the secret
    assert one.key_digest("s3:abc") != one.key_digest("s3:abd")


# text from outside the process -----------------------------------------------------------------
def test_loggable_escapes_and_cuts() -> None:
    assert loggable("plain text: 'quoted' é") == "plain text: 'quoted' é"
    assert loggable(PLANTED) == "\\x1b[31mplanted\\nWARNING:regions:a forged line\\r"
    assert loggable("\u202eevil\u2028x\x7f") == "\\u202eevil\\u2028x\\x7f"  # bidi override, separators
    long = loggable("\x00" * 10_000)
    assert long.isprintable() and len(long) <= LOG_TEXT_LIMIT + 40
    assert long.startswith("\\x00\\x00") and long.endswith("(9950 more characters)")
    assert loggable(ValueError("a\nb")) == "a\\nb"


class PlantingServer:
    """A TCP server on loopback speaking just enough memcached: every command line is answered as
    a miss (``EN`` to a meta get, else ``END``) until :attr:`armed`, then with :data:`PLANTED` in a
    ``SERVER_ERROR`` line, as a hostile or broken server (or a proxy echoing what it was sent) could
    answer. memcached itself
    never echoes planted bytes, so no real one can stand in here."""

    def __init__(self) -> None:
        self.armed = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while data := conn.recv(65536):
                buf += data
                while b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    if self.armed.is_set():
                        conn.sendall(b"SERVER_ERROR " + PLANTED.encode() + b"x" * 1000 + b"\r\n")
                    else:  # a miss, in the meta protocol for a meta get (``mg``)
                        conn.sendall(b"EN\r\n" if line.startswith(b"mg ") else b"END\r\n")
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()
        for conn in self.conns:
            conn.close()


def test_a_servers_answer_is_escaped_and_cut_in_the_log(
    make_manager: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = PlantingServer()
    try:
        manager = make_manager({"mc": {"BACKEND": "memcached", "LOCATION": server.address}})
        region = manager["mc"]
        assert region.get("k") is None  # connected: the next get is read by regions' own reader
        server.armed.set()
        with caplog.at_level(logging.WARNING, logger="regions"):
            assert region.get("k") is None
        assert region.stats()["errors"] == 1
    finally:
        server.close()
    [line] = regions_lines(caplog)
    assert "MemcacheServerError" in line and "\\x1b[31mplanted\\nWARNING:regions:a forged line" in line
    assert_clean(line)
    assert len(line) < 500 and "more characters" in line, line


def _object_named(name: str) -> bytes:
    """A pickle of an instance of a class made at unpickling, called ``name``: ``type(name, (), {})()``."""
    text = name.encode()
    return (
        b"\x80\x04cbuiltins\ntype\nX" + len(text).to_bytes(4, "little") + text
        + b")}\x87R)R."  # (name, (), {}) -> type(...) -> class() ; STOP
    )


def test_a_planted_entry_s_text_is_escaped_in_the_log(
    memcached_server: str, make_manager: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a secret anyone who can write to the server can forge an entry's tag (and the region
    warns so when it is built): a forged entry whose unpickled object's type is named with control
    characters makes the read fail with that name in the error, which is logged."""
    data = _object_named(PLANTED)
    assert type(pickle.loads(data)).__name__ == PLANTED
    manager = make_manager({"mc": {"BACKEND": "memcached", "LOCATION": memcached_server}}, secret=None)

    @manager.region("mc")
    def f(x: int) -> int:
        return x

    wire = f.cache_key(1)
    key = wire.encode()
    forged = MAGIC + Signer(None).tag(bytes((len(key),)) + key, data) + data
    host, port = memcached_server.rsplit(":", 1)
    client = Client((host, int(port)))
    try:
        client.set(wire, forged, noreply=False)
    finally:
        client.close()
    with caplog.at_level(logging.WARNING, logger="regions"):
        assert f(1) == 1
    [line] = [m for m in regions_lines(caplog) if "failed" in m]
    assert "\\x1b[31mplanted\\nWARNING:regions:a forged line" in line, line
    assert_clean(line)
