"""A process publishes its figures at exit (regions/fleet.py): a shell session shorter than one
publish interval is counted by ``regions stats`` / ``deployment_stats()``, and an exit with its
memcached stopped (SIGSTOP) or gone (SIGKILL) still ends cleanly. Real processes, real memcached."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import regions
from tests.conftest import MemcachedServer

ROOT = Path(__file__).resolve().parents[1]
SECRET = "a-test-secret-long-enough"

#: A short session: 3 misses and 5 hits, then the end of the script (publish_every is a minute:
#: only the exit can publish). With "wait", it waits for a line on stdin before exiting.
SESSION = """
import sys
import regions

address, prefix, wait = sys.argv[1:4]
manager = regions.CacheManager({"mc": {"BACKEND": "memcached", "LOCATION": address}},
                               key_prefix=prefix, secret=SECRET, publish_every=60)

@manager.region("mc")
def square(x):
    return x * x

for x in (1, 2, 3, 1, 2, 3, 1, 2):
    square(x)
print("made calls", flush=True)
if wait == "wait":
    sys.stdin.readline()
"""


def session(address: str, prefix: str, wait: bool = False) -> subprocess.Popen[str]:
    script = f"SECRET = {SECRET!r}\n{SESSION}"
    return subprocess.Popen(
        [sys.executable, "-c", script, address, prefix, "wait" if wait else "no"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def reader(address: str, prefix: str) -> regions.CacheManager:
    return regions.CacheManager({"mc": {"BACKEND": "memcached", "LOCATION": address}},
                                key_prefix=prefix, secret=SECRET, publish_every=60)


def test_a_short_session_is_counted_after_it_exits(memcached_server: str) -> None:
    prefix = uuid.uuid4().hex[:10]
    proc = session(memcached_server, prefix)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    manager = reader(memcached_server, prefix)
    try:
        stats = manager.deployment_stats()["mc"]
    finally:
        manager.close()
    assert (stats["hits"], stats["misses"], stats["processes"]) == (5, 3, 1), stats
    assert stats["scope"] == "deployment" and stats["error"] is None


def test_publish_every_0_publishes_nothing_at_exit_either(memcached_server: str) -> None:
    prefix = uuid.uuid4().hex[:10]
    script = f"SECRET = {SECRET!r}\n" + SESSION.replace("publish_every=60", "publish_every=0")
    done = subprocess.run([sys.executable, "-c", script, memcached_server, prefix, "no"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    manager = reader(memcached_server, prefix)
    try:
        assert manager.deployment_stats()["mc"]["processes"] == 0
    finally:
        manager.close()


def exit_with_server(server: MemcachedServer, fault: signal.Signals) -> subprocess.CompletedProcess[str]:
    proc = session(server.address, uuid.uuid4().hex[:10], wait=True)
    assert proc.stdout is not None and proc.stdout.readline() == "made calls\n"
    os.kill(server.proc.pid, fault)
    try:
        out, err = proc.communicate("exit\n", timeout=120)  # a guard against a hang, not a timing
    finally:
        if fault == signal.SIGSTOP:
            os.kill(server.proc.pid, signal.SIGCONT)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_the_exit_goes_on_when_memcached_is_stopped(memcached_factory) -> None:  # type: ignore[no-untyped-def]
    done = exit_with_server(memcached_factory(), signal.SIGSTOP)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr


def test_the_exit_goes_on_when_memcached_is_gone(memcached_factory) -> None:  # type: ignore[no-untyped-def]
    done = exit_with_server(memcached_factory(), signal.SIGKILL)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.count("\n") <= 2, done.stderr  # a line or so, never a flood
