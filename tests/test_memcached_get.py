"""The hit path's own GET (regions/backends/memcached/wire.py) against a real memcached: values of
every size, misses, error replies and a connection left in a bad state."""

from __future__ import annotations

import os
import socket

import pytest
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheUnexpectedCloseError

from regions.backends.memcached import wire


@pytest.fixture
def client(memcached_server):
    host, port = memcached_server.rsplit(":", 1)
    c = Client((host, int(port)), connect_timeout=2, timeout=2, no_delay=True)
    yield c
    c.close()


@pytest.mark.parametrize("size", [0, 1, 100, 65_529, 65_536, 200_000, 1_000_000])
def test_values_of_every_size_come_back_whole(client, size):
    key = f"get-{size}-{os.getpid()}"
    value = os.urandom(size)
    client.set(key, value, noreply=False)
    client.get("warm-up")  # connected: the lean path is taken
    assert client.sock is not None
    assert wire.get(client, key.encode()) == (value, -1)  # (never expires)
    assert wire.get(client, key.encode()) == (value, -1)  # and the connection is still in step
    assert client.get(key) == value


def test_a_miss_is_none_and_a_first_call_connects(client):
    assert client.sock is None
    assert wire.get(client, b"never-set-key") is None  # through pymemcache: connects
    assert client.sock is not None
    assert wire.get(client, b"never-set-key") is None


def test_a_hit_says_the_seconds_the_server_keeps_the_item(client):
    """``mg``'s ``t``: seconds left of a relative expiry, of an absolute one (a Unix time), -1 for none."""
    import time

    client.set("left-rel", b"a", expire=7, noreply=False)
    client.set("left-abs", b"b", expire=int(time.time()) + 40 * 24 * 3600, noreply=False)
    client.set("left-none", b"c", noreply=False)
    assert wire.get(client, b"left-rel")[1] in (6, 7)
    assert abs(wire.get(client, b"left-abs")[1] - 40 * 24 * 3600) <= 2
    assert wire.get(client, b"left-none") == (b"c", -1)


def test_the_tagged_hit_reads_the_entry_and_the_counters_in_one_send(client):
    client.set("t-entry", b"END\r\nVA 3 t1 kx\r\n", expire=9, noreply=False)
    client.set("t-c1", b"12", noreply=False)
    client.get("warm-up")
    entry, counters = wire.get_tagged(client, b"t-entry", [b"t-c1", b"t-c2"])
    assert entry is not None and entry[0] == b"END\r\nVA 3 t1 kx\r\n" and entry[1] in (8, 9)
    assert counters == [b"12", None]
    assert wire.get_tagged(client, b"t-none", [b"t-c1"]) == (None, [b"12"])
    assert wire.get_tagged(client, b"t-none", []) == (None, [])
    big = os.urandom(300_000)
    client.set("t-big", big, noreply=False)
    assert wire.get_tagged(client, b"t-big", [b"t-c1"]) == ((big, -1), [b"12"])
    client.set("t-c3", b"3\r\nVA 1\r\n4", noreply=False)  # framing in a counter: read whole
    counters = wire.get_tagged(client, b"t-entry", [b"t-c3", b"t-c2", b"t-c1"])[1]
    assert counters == [b"3\r\nVA 1\r\n4", None, b"12"]
    assert wire.get(client, b"t-c1") == (b"12", -1)  # still in step


def test_a_first_tagged_call_connects(client):
    assert client.sock is None
    client_set = Client(client.server, connect_timeout=2, timeout=2)
    client_set.set("first-tagged", b"v", expire=30, noreply=False)
    client_set.close()
    entry, counters = wire.get_tagged(client, b"first-tagged", [b"nope"])
    assert client.sock is not None and entry is not None and entry[0] == b"v" and counters == [None]


def test_a_reply_for_another_key_is_out_of_step(client):
    client.set("mine", b"1", noreply=False)
    client.set("other", b"2", noreply=False)
    client.get("warm-up")
    client.sock.sendall(b"mg other v t k\r\n")  # its reply arrives before the hit's
    with pytest.raises(MemcacheUnexpectedCloseError):
        wire.get(client, b"mine")
    assert client.sock is None
    assert wire.get(client, b"mine") == (b"1", -1)


@pytest.mark.parametrize("stale", [b"mg tag-c v\r\n", b"mg tag-entry v t k\r\n", b"version\r\n"])
def test_a_tagged_reply_out_of_step_drops_the_connection(client, stale):
    """A reply that arrives before the tagged hit's own (a counter's, the same entry's, another
    command's) is never taken for it: the call raises a network error and the socket is dropped."""
    client.set("tag-entry", b"entry", noreply=False)
    client.set("tag-c", b"7", noreply=False)
    client.get("warm-up")
    client.sock.sendall(stale)
    with pytest.raises(MemcacheUnexpectedCloseError):
        wire.get_tagged(client, b"tag-entry", [b"tag-c"])
    assert client.sock is None
    assert wire.get_tagged(client, b"tag-entry", [b"tag-c"]) == ((b"entry", -1), [b"7"])


def test_values_containing_the_protocol_framing(client):
    value = b"END\r\nVALUE x 0 3\r\nabc\r\nEND\r\n"
    client.set("framing", value, noreply=False)
    client.get("warm-up")
    assert wire.get(client, b"framing")[0] == value


def test_a_reply_out_of_step_closes_the_connection(client, memcached_server):
    """Bytes nobody asked for (here: a reply to a command sent behind the client's back) are never
    taken for the value: the call raises and the socket is dropped, then the next call reconnects."""
    client.set("step", b"value", noreply=False)
    client.get("warm-up")
    client.sock.sendall(b"version\r\n")  # its reply arrives before the GET's
    with pytest.raises(MemcacheUnexpectedCloseError):
        wire.get(client, b"step")
    assert client.sock is None
    assert wire.get(client, b"step")[0] == b"value"  # reconnected by pymemcache


def test_a_server_that_closes_raises_a_network_error(memcached_factory):
    server = memcached_factory()
    host, port = server.address.rsplit(":", 1)
    c = Client((host, int(port)), connect_timeout=1, timeout=1)
    c.set("k", b"v", noreply=False)
    assert wire.get(c, b"k")[0] == b"v"
    server.stop()
    with pytest.raises((MemcacheUnexpectedCloseError, OSError)):
        wire.get(c, b"k")
    assert c.sock is None


def test_a_silent_server_times_out():
    """A listener that accepts and never answers: the socket's timeout bounds the call."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        c = Client(listener.getsockname(), connect_timeout=0.3, timeout=0.3)
        c._connect()  # noqa: SLF001 - a connected client, without a round trip the listener would fail
        with pytest.raises(OSError):
            wire.get(c, b"k")
        assert c.sock is None


@pytest.mark.skipif(not wire.KERNEL_TIMEOUTS, reason="kernel socket timeouts are used on Linux only")
def test_the_kernel_enforces_the_timeout_of_a_hung_server(memcached_factory):
    """After the first hit the socket is blocking with SO_RCVTIMEO: a server that stops answering
    (SIGSTOP) still costs one timeout, raised as an OSError that marks the server down."""
    import signal
    import struct
    import time

    from tests.faults.conftest import all_threads_stopped

    server = memcached_factory()
    host, port = server.address.rsplit(":", 1)
    c = Client((host, int(port)), connect_timeout=0.4, timeout=0.4)
    c.set("k", b"v", noreply=False)
    assert wire.get(c, b"k")[0] == b"v"
    assert c.sock.gettimeout() is None
    raw = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.calcsize("ll"))
    assert struct.unpack("ll", raw) == (0, 400_000)
    os.kill(server.proc.pid, signal.SIGSTOP)
    while not all_threads_stopped(server.proc.pid):  # delivered asynchronously (CI got an answer)
        time.sleep(0.001)
    try:
        start = time.monotonic()
        with pytest.raises(OSError):
            wire.get(c, b"k")
        assert 0.3 < time.monotonic() - start < 5  # the timeout, not forever
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    assert wire.get(c, b"k")[0] == b"v"  # reconnected (pymemcache), then kernel timeouts again


def test_the_tagged_hit_reuses_the_last_counters_values_only_for_the_same_bytes(client):
    """``seen``: a whole reply whose counters' part is the last one's gives the last values (the
    same list); a moved counter, a missing one or another number of counters is read afresh."""
    client.set("s-entry", b"value", noreply=False)
    client.set("s-c1", b"41", noreply=False)
    client.set("s-c2", b"7", noreply=False)
    client.get("warm-up")
    seen = wire.CounterReplies()
    first = wire.get_tagged(client, b"s-entry", [b"s-c1", b"s-c2"], seen=seen)
    again = wire.get_tagged(client, b"s-entry", [b"s-c1", b"s-c2"], seen=seen)
    assert first == ((b"value", -1), [b"41", b"7"]) and again[1] is first[1]
    client.incr("s-c1", 1)  # a bump: other bytes, other values
    assert wire.get_tagged(client, b"s-entry", [b"s-c1", b"s-c2"], seen=seen)[1] == [b"42", b"7"]
    client.delete("s-c2", noreply=False)
    assert wire.get_tagged(client, b"s-entry", [b"s-c1", b"s-c2"], seen=seen)[1] == [b"42", None]
    client.set("s-c2", b"7", noreply=False)
    two = wire.get_tagged(client, b"s-entry", [b"s-c1", b"s-c2"], seen=seen)[1]
    # the same bytes in answer to one command are not that reply (out of step: the careful way)
    assert wire._whole_tagged(b"VA 1 t-1 ks-entry\r\nx\r\n" + seen.last[1], b"s-entry", 1, seen) is None
    assert two == [b"42", b"7"]
    assert wire.get(client, b"s-c1") == (b"42", -1)  # still in step
