"""Helpers shared by the Django tests (importable as ``tests.django.helpers``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from django_regions.middleware import RequestRegionMiddleware
from tests.conftest import free_port as free_port  # the servers' ports: one scheme for the suite

ROOT = Path(__file__).resolve().parents[2]


class Served(str):
    """A served project's base URL, with the server's ``pid`` and the ``log`` file of its output."""

    pid: int
    log: Path

    def __new__(cls, base: str, pid: int, log: Path) -> Served:
        served = super().__new__(cls, base)
        served.pid, served.log = pid, log
        return served

    def output_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def wait_for_http(
    url: str, proc: subprocess.Popen[bytes], log: Path | None = None, timeout: float = 30.0
) -> None:
    """Poll ``url`` until it answers 200; fail with the server's output (its pipe, or ``log``) if
    it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            if log is not None:
                out = log.read_text(errors="replace")
            else:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            pytest.fail(f"server exited with {proc.returncode}:\n{out}", pytrace=False)
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{url} did not answer within {timeout} s", pytrace=False)


def example_env(memcached: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of the example project served by a test: its settings, the given memcached,
    a var/ folder of its own, DEBUG off; ``extra`` adds or overrides variables."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "REGIONS_MEMCACHED": memcached,
        "REGIONS_VAR_DIR": str(tmp_path / "var"),
        "DJANGO_DEBUG": "0",
        **extra,
    }


def start_gunicorn(
    app: str, env: dict[str, str], workers: int, *, preload: bool = False
) -> tuple[subprocess.Popen[bytes], str]:
    """A real gunicorn serving ``app`` (``module:callable``) from the project root on a free port;
    returns the process (output piped, for :func:`stop`) and its base URL."""
    folder = os.path.dirname(sys.executable)
    if shutil.which("gunicorn", path=folder) is None:
        pytest.fail("gunicorn is part of the test extras: pip install -e '.[test]'", pytrace=False)
    port = free_port()
    cmd = [os.path.join(folder, "gunicorn"), *(["--preload"] if preload else []), "--workers", str(workers),
           "--bind", f"127.0.0.1:{port}", "--log-level", "warning", app]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


def stop(proc: subprocess.Popen[bytes]) -> str:
    """Stop a server we started (by its own handle) and return its output."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.stdout.read().decode(errors="replace") if proc.stdout else ""


class MyMiddleware(RequestRegionMiddleware):
    """A project's own subclass counts as the middleware (check W001)."""
