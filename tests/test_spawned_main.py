"""A function defined in a script run as ``__main__`` shares its entries with the processes the
script starts through ``multiprocessing`` spawn (or forkserver).

Such a child imports the script again under the name ``__mp_main__``, so the function's
``__module__`` there is ``__mp_main__``: keyed by that, the child never hit the parent's entries
(nor its invalidations), and the parent never hit the child's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = '''
import json
import multiprocessing
import os

import regions

manager = regions.CacheManager(
    {"f": {"BACKEND": "file", "LOCATION": os.environ["SPAWNED_MAIN_LOCATION"]}},
    key_prefix="spawned-main", secret="spawned-main-secret",
)
CALLS = []


@manager.region("f")
def square(n):
    CALLS.append(n)
    return n * n


def child(queue):
    got = {"module": __name__, "value": square(7), "calls": list(CALLS), "key": repr(square.cache_key(7))}
    square.invalidate(8)  # the parent computes 8 again
    queue.put(got)


if __name__ == "__main__":
    first = square(7), square(8)
    spawn = multiprocessing.get_context("spawn")
    queue = spawn.Queue()
    proc = spawn.Process(target=child, args=(queue,))
    proc.start()
    got = queue.get(timeout=120)
    proc.join(60)
    again = square(8)
    print(json.dumps({"parent": {"value": first, "calls": CALLS, "key": repr(square.cache_key(7)),
                                 "again": again}, "child": got}))
'''


def test_spawned_child_hits_the_entry_of_its_parents_main_script(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, SPAWNED_MAIN_LOCATION=str(tmp_path / "cache"))
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    parent, child = report["parent"], report["child"]
    assert child["module"] == "__mp_main__"  # the case at hand: the child imported the script anew
    assert child["key"] == parent["key"]
    assert (child["value"], child["calls"]) == (49, []), "the child computed: it missed the parent's entry"
    assert (parent["again"], parent["calls"]) == (64, [7, 8, 8]), "the child's invalidation missed"
