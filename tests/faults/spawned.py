"""Callers in spawned processes (``multiprocessing.get_context("spawn")``: each a fresh interpreter
with its own manager, pools and breakers), driven by the test process.

A child's target is a top-level function of a module the child imports by name (see
:mod:`tests.faults.workers` and :mod:`tests.faults.cluster_workers`), called as
``target(config, key_prefix, mine, ready, go, stop, *shared, results)``: it puts ``("ready", pid)``
on ``ready``, waits for ``go``, calls until ``stop`` and ends by putting ``("done", pid, calls,
stats)`` (or ``("error", pid, traceback)``) on ``results``. Each :class:`SpawnedCallers` has queues
and events of its own: nothing here is shared between tests or between pytest-xdist workers.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

#: The context the children and every queue, event and shared value they use are made in.
SPAWN = multiprocessing.get_context("spawn")


class SpawnedCallers:
    """One spawned child per item of ``per_caller`` (its ``mine`` argument), with ``shared`` (values
    made in :data:`SPAWN`) passed to each. As a context manager: the children start on entry; on
    exit ``stop`` is set and each child joined, killed if it has not ended 10 s later."""

    def __init__(
        self,
        target: Callable[..., None],
        config: dict[str, Any],
        key_prefix: str,
        per_caller: Sequence[Any],
        *shared: Any,
    ) -> None:
        self.ready, self.results = SPAWN.Queue(), SPAWN.Queue()
        self.go, self.stop = SPAWN.Event(), SPAWN.Event()
        self.procs = [
            SPAWN.Process(
                target=target,
                args=(config, key_prefix, mine, self.ready, self.go, self.stop, *shared, self.results),
                daemon=True,
            )
            for mine in per_caller
        ]

    def __enter__(self) -> SpawnedCallers:
        for p in self.procs:
            p.start()
        return self

    def start_calling(self) -> None:
        """Once every child is ready (each has 60 s to get there), tell them all to go at once."""
        for _ in self.procs:
            msg = self.ready.get(timeout=60)
            assert msg[0] == "ready", msg
        self.go.set()

    def stop_and_collect(self) -> dict[int, tuple[Any, dict[str, Any]]]:
        """Set ``stop``; ``{pid: (calls, stats)}`` of every child (each message within 30 s). A child
        that broke fails the test with its traceback; other messages still queued are passed over."""
        self.stop.set()
        done: dict[int, tuple[Any, dict[str, Any]]] = {}
        while len(done) < len(self.procs):
            msg = self.results.get(timeout=30)
            assert msg[0] != "error", msg[2]
            if msg[0] == "done":
                done[msg[1]] = (msg[2], msg[3])
        return done

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop.set()
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
