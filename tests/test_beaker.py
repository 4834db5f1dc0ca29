"""Beaker finds and drives our backends as its own: registration and sessions as an app configures them.

The per-backend Beaker behaviours (Cache, Value, NamespaceManager, SessionMiddleware, CacheMiddleware)
are part of the contract in :mod:`regions.testing`; these are the ones that are not per backend.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from beaker.cache import clsmap
from beaker.middleware import SessionMiddleware

from regions.backends import BUILTIN
from regions.backends.contract import Backend
from regions.testing import WsgiClient


@pytest.fixture(params=["memcached", "file"])
def session_options(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """``beaker.session.*`` settings, as in a Pylons/Pyramid ini file, for a persistent backend."""
    if request.param == "memcached":
        where = {"beaker.session.url": request.getfixturevalue("memcached_server")}
    else:
        where = {"beaker.session.data_dir": str(tmp_path / "sessions")}
    return {"beaker.session.type": f"regions.{request.param}", "beaker.session.key": "sid", **where}


def session_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """``/``: count this session's requests; ``/invalidate``: start a new session id, same counter."""
    session = environ["beaker.session"]
    if environ["PATH_INFO"] == "/invalidate":
        kept = session.get("n", 0)
        session.invalidate()
        session["n"] = kept
    session["n"] = session.get("n", 0) + 1
    session.save()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{session.id} {session['n']}".encode()]


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_beaker_finds_every_backend_by_its_entry_point(name: str) -> None:
    cls = clsmap[f"regions.{name}"]
    assert issubclass(cls, Backend)
    assert f"{cls.__module__}:{cls.__name__}" == BUILTIN[name]
    assert cls.store_class.name == name


def test_session_with_an_unknown_id_starts_empty(session_options: dict[str, Any]) -> None:
    """A cookie naming a session that is not stored (expired, or made up) gives a fresh session."""
    app = SessionMiddleware(session_app, session_options)
    client = WsgiClient()
    client.cookies["sid"] = "df7324911e246b70b5781c3c58328442"
    assert client.get(app).endswith(" 1")
    assert client.get(app).endswith(" 2")


def test_session_invalidate_keeps_the_data_under_a_new_id(session_options: dict[str, Any]) -> None:
    app = SessionMiddleware(session_app, session_options)
    client = WsgiClient()
    first_id, count = client.get(app).split()
    assert count == "1"
    new_id, count = client.get(app, "/invalidate").split()
    assert (new_id != first_id, count) == (True, "2")
    assert client.cookies["sid"] == new_id
    assert client.get(app) == f"{new_id} 3"  # the data moved to the new id, stored there


def test_session_timeout_option_is_accepted(session_options: dict[str, Any]) -> None:
    """Beaker passes ``timeout`` (plus 2 minutes) on to the namespace manager; sessions still work."""
    app = SessionMiddleware(session_app, {**session_options, "beaker.session.timeout": 600})
    client = WsgiClient()
    assert [client.get(app).split()[1] for _ in range(3)] == ["1", "2", "3"]


def test_creation_lock_that_fails_frees_its_process_lock(memcached_factory: Any, make_manager: Any) -> None:
    """Beaker's ``Value`` releases its creation lock only after ``acquire`` returned: when the
    memcached lock fails (server hung), the in-process lock of the key must be free again, or every
    other thread of the process would wait for that key forever."""
    import os
    import signal
    import threading
    import time

    from tests.faults.conftest import all_threads_stopped

    server = memcached_factory()
    manager = make_manager({"mc": {"BACKEND": "memcached", "LOCATION": server.address,
                                   "OPTIONS": {"distributed_lock": True, "timeout": 0.3}}})
    ns = manager["mc"].namespace("beaker.value")
    ns.set_value("k", 1)
    os.kill(server.proc.pid, signal.SIGSTOP)
    while not all_threads_stopped(server.proc.pid):
        time.sleep(0.001)
    try:
        with pytest.raises(Exception):  # noqa: B017 - whatever pymemcache raises on a timeout
            ns.get_creation_lock("k").acquire()
        got: list[bool] = []
        other = threading.Thread(target=lambda: got.append(ns.get_creation_lock("k").acquire(False)))
        other.start()
        other.join(5)
        assert got == [True], "another thread could not take the key's lock: the failed acquire kept it"
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


@pytest.mark.parametrize("data_dir", ["./cache", "cache", "a/b"])
def test_relative_data_dir_from_an_empty_working_directory(
    data_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beaker's own tests use ``data_dir='./cache'`` from wherever they run: the folder, and every
    folder above it inside the working directory, is made on first use, from several threads at once
    (``os.path.dirname`` of a relative path ends at ``''``, which is the working directory)."""
    import stat
    import threading

    from beaker.cache import Cache

    work = tmp_path / "empty"
    work.mkdir()
    monkeypatch.chdir(work)
    cache = Cache("relative", type="regions.file", data_dir=data_dir)
    created: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def use(n: int) -> None:
        try:
            start.wait(10)
            for i in range(30):
                key = f"k{(n + i) % 5}"
                got = cache.get(key, createfunc=lambda key=key: created.append(key) or key.upper())
                assert got == key.upper()
        except BaseException as exc:  # reported below, with the thread's traceback
            errors.append(exc)

    threads = [threading.Thread(target=use, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(created) == [f"k{i}" for i in range(5)]  # one computation per key, entries shared
    assert Cache("relative", type="regions.file", data_dir=str(work / data_dir)).get("k3") == "K3"
    assert stat.S_IMODE((work / data_dir).stat().st_mode) == 0o700
    assert stat.S_IMODE((work / Path(data_dir).parts[0]).stat().st_mode) == 0o700  # "a" of "a/b" too


@pytest.mark.parametrize("name", ["redis", "memcached"])
def test_beaker_cache_text_and_encoded_keys_name_one_entry(name: str, request: pytest.FixtureRequest) -> None:
    """Beaker's ``Cache`` encodes a text key (``'ascii', 'backslashreplace'``) before it reaches the
    manager; the manager's own callers (a creation lock, ``namespace.has_key``) pass the text. As in
    Beaker's ext:redis and ext:memcached managers, both name one entry and one creation lock."""
    from beaker.cache import Cache

    url = request.getfixturevalue(f"{name}_server")
    cache = Cache("encoded-keys", type=f"regions.{name}", url=url)
    cache.clear()
    cache.set_value("hiŏ", 24)
    assert cache.namespace.has_key("hi\\u014f") and b"hi\\u014f" in cache.namespace
    assert cache.namespace["hi\\u014f"][2] == 24  # Beaker's Value stores (storedtime, expire, value)
    lock = cache.namespace.get_creation_lock("k")
    assert lock.acquire(wait=False)
    try:
        other: list[bool] = []  # another thread: the in-process lock is reentrant for its holder
        encoded = cache.namespace.get_creation_lock(b"k")
        thread = threading.Thread(target=lambda: other.append(encoded.acquire(wait=False)))
        thread.start()
        thread.join()
        assert other == [False]
    finally:
        lock.release()
    del cache.namespace[b"hi\\u014f"]
    assert "hiŏ" not in cache


def test_beaker_manager_timeout_is_the_default_lifetime(redis_server: str) -> None:
    """Beaker's sessions give their manager a ``timeout`` (theirs plus 120 s); an entry stored without
    an ``expiretime`` lives that long in Redis, as with Beaker's ext:redis, instead of for ever."""
    import redis

    ns = clsmap["regions.redis"]("timeout-default", url=redis_server, timeout=121)
    forever = clsmap["regions.redis"]("timeout-none", url=redis_server)
    ns["k"] = 1
    forever["k"] = 1
    client = redis.Redis.from_url(redis_server)
    assert client.pttl(ns.wire_key("k")) > 0  # (121 s plus the grace the store keeps for stale reads)
    assert client.pttl(forever.wire_key("k")) == -1
    assert ns.timeout == 121 and ns["k"] == 1
