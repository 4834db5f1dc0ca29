"""What a tagged hit costs on memcached: the commands on the wire and the server's counters.

A counting TCP proxy between the region and a real memcached splits what the client sends into
command lines, and counts round trips: requests sent while no reply was pending. A hit is a meta
get of the entry (``mg <key> v t k``: its value and seconds left); a tagged hit sends a meta get
of each of its tags' counters (``mg <counter> v``) with it, in the same send, so one round trip
either way, and a second round trip per hit (the counters read after the entry, say) shows. The
server's ``cmd_get`` counts keys, not commands (an ``mg`` is one): a hit of a function with two
tags asks for three keys. The figures go to ``FIGURES`` (also printed, for ``-s``).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import memcached_stats_of

FIGURES = Path(os.environ.get("REGIONS_TAG_FIGURES", "/tmp/notes/figures_tags.txt"))


class CountingProxy:
    """Forwards 127.0.0.1:<port> to ``target``; counts the client's command lines by verb, and its
    round trips (data sent while no reply was pending)."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.commands: Counter[str] = Counter()
        self.keys_per_get: list[int] = []
        self.round_trips = 0
        self.pending_reply = False
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.commands.clear()
            self.keys_per_get.clear()
            self.round_trips = 0

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._up, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client), daemon=True).start()

    def _up(self, src: socket.socket, dst: socket.socket) -> None:
        pending = b""
        skip = 0  # bytes of a storage command's data block still to come
        while data := _recv(src):
            with self.lock:
                if not self.pending_reply:
                    self.round_trips += 1
                    self.pending_reply = True
            pending += data
            while True:
                if skip:
                    taken = min(skip, len(pending))
                    pending, skip = pending[taken:], skip - taken
                    if skip:
                        break
                end = pending.find(b"\r\n")
                if end < 0:
                    break
                line, pending = pending[:end].split(), pending[end + 2 :]
                if not line:
                    continue
                verb = line[0].decode()
                with self.lock:
                    self.commands[verb] += 1
                    if verb in ("get", "gets"):
                        self.keys_per_get.append(len(line) - 1)
                if verb in ("set", "add", "replace", "append", "prepend", "cas"):
                    skip = int(line[4]) + 2
            # Forwarded only once counted: the reply, and so the client's next step (a reset of
            # the counts, say), cannot come before the count of the command it answers.
            dst.sendall(data)
        dst.close()

    def _down(self, src: socket.socket, dst: socket.socket) -> None:
        while data := _recv(src):
            with self.lock:
                self.pending_reply = False
            dst.sendall(data)
        dst.close()

    def close(self) -> None:
        self.listener.close()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


@pytest.fixture
def proxy(memcached_factory):
    server = memcached_factory()
    counting = CountingProxy(server.address)
    yield counting, server.address
    counting.close()


def record(lines: list[str], source: str = __name__) -> None:
    print("\n".join(lines))
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    with FIGURES.open("a") as f:
        f.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {source}\n" + "\n".join(lines) + "\n")


def test_a_tagged_hit_is_one_get_on_the_wire(make_manager, proxy) -> None:
    counting, server = proxy
    manager = make_manager({"r": {"BACKEND": "memcached", "LOCATION": counting.address}})

    @manager.region("r", tags=lambda pk: [f"post:{pk}", "posts"])
    def tagged(pk: int) -> int:
        return pk

    @manager.region("r")
    def plain(pk: int) -> int:
        return pk

    tagged(1), plain(1), tagged(1), plain(1)  # counters read, entries stored, connections made
    hits = 200
    counting.reset()
    before = memcached_stats_of(server)
    for _ in range(hits):
        assert tagged(1) == 1
    time.sleep(0.05)  # the proxy's thread has counted the last command
    after = memcached_stats_of(server)
    tagged_commands = dict(counting.commands)
    tagged_trips = counting.round_trips
    cmd_get = int(after["cmd_get"]) - int(before["cmd_get"])
    get_hits = int(after["get_hits"]) - int(before["get_hits"])

    counting.reset()
    for _ in range(hits):
        assert plain(1) == 1
    time.sleep(0.05)
    plain_commands, plain_trips = dict(counting.commands), counting.round_trips

    assert plain_commands == {"mg": hits} and plain_trips == hits
    assert tagged_trips == hits, "a tagged hit must be one round trip, like a plain one"
    assert tagged_commands == {"mg": 3 * hits}  # the entry's mg and its 2 counters', sent together
    assert cmd_get == 3 * hits and get_hits == 3 * hits
    assert manager["r"].stats()["errors"] == 0
    record([
        f"memcached hit of a function with 2 tags, {hits} hits: {tagged_trips} round trips "
        f"({tagged_trips / hits:g} per hit, each 'mg' of the entry + 'mg' of 2 counters in one send; "
        f"untagged: {plain_trips / hits:g}, one 'mg'), so extra round trips per hit = "
        f"{(tagged_trips - plain_trips) / hits:g}; server cmd_get "
        f"+{cmd_get} (= keys: {cmd_get / hits:g} per hit), get_hits +{get_hits}",
    ])


@pytest.mark.parametrize("backend", ["memcached", "file", "memory"])
def test_hit_cost_of_tagged_and_plain_functions(make_manager, region_config, backend) -> None:
    """Recorded, not asserted (no timing assertions): µs per hit, tagged (2 tags) and plain."""
    manager = make_manager({"r": region_config(backend)})

    @manager.region("r", tags=lambda pk: [f"post:{pk}", "posts"])
    def tagged(pk: int) -> int:
        return pk

    @manager.region("r")
    def plain(pk: int) -> int:
        return pk

    tagged(1), plain(1)
    rounds = 3000 if backend == "memory" else 1000
    best: dict[str, float] = {}
    for name, func in (("plain", plain), ("tagged", tagged)) * 3:
        start = time.perf_counter()
        for _ in range(rounds):
            func(1)
        per_hit = (time.perf_counter() - start) / rounds * 1e6
        best[name] = min(best.get(name, per_hit), per_hit)
    stats = manager["r"].stats()
    assert stats["misses"] == 2 and stats["errors"] == 0
    record([
        f"{backend} hit: plain {best['plain']:.1f} µs, tagged (2 tags) {best['tagged']:.1f} µs "
        f"(x{best['tagged'] / best['plain']:.2f}; best of 3 x {rounds})"
    ])
