"""How long another process serves an old value after an invalidation: push against polling.

    python benchmarks/propagation.py              # 20 trials per case, sync_interval 1 s
    python benchmarks/propagation.py --trials 5   # a smoke run

Starts its own redis-server on a free loopback port and two spawned processes (real processes,
real sockets): A invalidates, B reads. One trial: B calls the cached function until it holds the
current value, then calls it every millisecond; A changes the "database" (a file), calls
``invalidate()`` (a random pause after B said it holds the value: anywhere between two of B's
looks at the log) and notes the monotonic time when it returned (``CLOCK_MONOTONIC``: the same clock
in every process of the machine); B notes the time its first call returned the new value. The
delay is the difference. Four cases, their trials interleaved (one trial of each in turn, so load
on the machine falls on all of them alike), each a process-local region over the Redis region with
``sync_interval`` 1 s: ``memory`` + ``sync_with`` and ``tiered``, with push (the default) and with
``push: False`` (polling only). Prints the median and the max per case; exits 0 (information, not
a gate).
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

INTERVAL = 1.0
#: B's pause between two calls while it watches for the new value.
PAUSE = 0.001
CASES = {
    "memory + sync_with redis, push": ("memory", True),
    "memory + sync_with redis, polling (push: False)": ("memory", False),
    "tiered over redis, push": ("tiered", True),
    "tiered over redis, polling (push: False)": ("tiered", False),
}


def _config(url: str) -> dict[str, Any]:
    regions: dict[str, Any] = {"r": {"BACKEND": "redis", "LOCATION": url, "TIMEOUT": 300}}
    for n, (backend, push) in enumerate(CASES.values()):
        link = {"sync_with": "r"} if backend == "memory" else {"over": "r"}
        regions[f"c{n}"] = {"BACKEND": backend, "TIMEOUT": 300,
                            "OPTIONS": {**link, "sync_interval": INTERVAL, "push": push}}
    return regions


def _read(path: str) -> int:
    return int(Path(path).read_text() or 0)


def _functions(manager: Any, folder: str) -> list[Any]:
    """One cached ``value(x)`` per case (same qualified name in A and B: the same namespace)."""
    out = []
    for n in range(len(CASES)):
        data = f"{folder}/data{n}"

        def value(x: int, data: str = data) -> tuple[int, int]:
            return (x, _read(data))

        value.__qualname__ = f"propagation_value_{n}"
        out.append(manager.region(f"c{n}")(value))
    return out


def _build(settings: dict[str, Any]) -> Any:
    import regions

    return regions.CacheManager(settings["config"], key_prefix=settings["prefix"], secret=settings["secret"])


def reader(settings: dict[str, Any], folder: str, orders: Any, replies: Any) -> None:
    """B: on ``(case, version)``, hold ``version``, say so, then watch for ``version + 1``."""
    manager = _build(settings)
    functions = _functions(manager, folder)
    try:
        replies.put("up")
        while True:
            order = orders.get()
            if order is None:
                return
            case, version = order
            value = functions[case]
            while value(1)[1] != version:
                time.sleep(PAUSE)
            value(1)  # a hit
            replies.put("holding")
            while value(1)[1] != version + 1:
                time.sleep(PAUSE)
            replies.put(time.monotonic())
    finally:
        manager.close()


def writer(settings: dict[str, Any], folder: str, orders: Any, replies: Any) -> None:
    """A: on ``(case, version)``, write ``version`` and invalidate; answer when ``invalidate()`` returned."""
    manager = _build(settings)
    functions = _functions(manager, folder)
    try:
        replies.put("up")
        while True:
            order = orders.get()
            if order is None:
                return
            case, version = order
            Path(f"{folder}/data{case}").write_text(str(version))
            functions[case].invalidate(1)
            replies.put(time.monotonic())
    finally:
        manager.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--verbose", action="store_true", help="print every trial's delay")
    args = parser.parse_args()
    from benchmarks.run import RedisServer

    server = RedisServer()
    ctx = multiprocessing.get_context("spawn")
    delays: dict[int, list[float]] = {n: [] for n in range(len(CASES))}
    with tempfile.TemporaryDirectory() as folder:
        for n in range(len(CASES)):
            Path(f"{folder}/data{n}").write_text("0")
        settings = {"config": _config(server.url), "prefix": "prop" + uuid.uuid4().hex[:6],
                    "secret": uuid.uuid4().hex}
        queues = [ctx.Queue() for _ in range(4)]
        b = ctx.Process(target=reader, args=(settings, folder, queues[0], queues[1]))
        a = ctx.Process(target=writer, args=(settings, folder, queues[2], queues[3]))
        b.start()
        a.start()
        try:
            assert queues[1].get(timeout=60) == "up" and queues[3].get(timeout=60) == "up"
            versions = [0] * len(CASES)
            phases = random.Random(16)
            for trial in range(args.trials):
                order = list(range(len(CASES)))
                if trial % 2:
                    order.reverse()
                for n in order:
                    queues[0].put((n, versions[n]))
                    assert queues[1].get(timeout=60) == "holding"
                    time.sleep(phases.uniform(0, INTERVAL))  # anywhere between two looks of B's
                    queues[2].put((n, versions[n] + 1))
                    invalidated = queues[3].get(timeout=60)
                    seen = queues[1].get(timeout=60)
                    delays[n].append(seen - invalidated)
                    versions[n] += 1
        finally:
            queues[0].put(None)
            queues[2].put(None)
            a.join(30)
            b.join(30)
            server.stop()
    print(f"Delay from invalidate() returning in process A to process B's first call returning the new "
          f"value; sync_interval {INTERVAL:g} s, {args.trials} trials per case, interleaved.")
    print(f"{'case':50} {'median ms':>10} {'max ms':>8} {'min ms':>8}")
    for n, name in enumerate(CASES):
        got = [d * 1000 for d in delays[n]]
        print(f"{name:50} {statistics.median(got):10.1f} {max(got):8.1f} {min(got):8.1f}")
        if args.verbose:
            print("    " + " ".join(f"{d:.1f}" for d in got))


if __name__ == "__main__":
    main()
