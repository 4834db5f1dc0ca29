"""Hit-path benchmarks for regions, as ratios against floors measured in the same run.

    python benchmarks/run.py            # full run (about a minute)
    python benchmarks/run.py --quick    # a few seconds: smoke test that everything runs
    python benchmarks/run.py --json out.json

Starts its own memcached on a free loopback port. Each group's cases are measured in interleaved
rounds (A, B, C, then C, B, A, ...); each round times one batch of calls per case. The table shows
the median time per call and the median of the per-round ratios to the group's floor. Always exits
0: the verdicts are information for a person, not a gate. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import functools
import gc
import itertools
import json
import os
import pickle
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A realistic cached value: a small list of records, about 1 KB pickled.
PAYLOAD = [{"id": i, "name": f"item {i}", "price": i * 1.25, "tags": ["a", "b", "c"]} for i in range(16)]


# ---------------------------------------------------------------------------------------------
# memcached


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Memcached:
    def __init__(self) -> None:
        binary = shutil.which("memcached")
        if binary is None:
            sys.exit("memcached is not installed: apt-get install -y memcached")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        args = [binary, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "128"]
        if os.geteuid() == 0:
            args += ["-u", "root"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"version\r\n")
                    if sock.recv(64).startswith(b"VERSION"):
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                sys.exit(f"memcached did not start on {self.address}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def memcached_version() -> str:
    try:
        out = subprocess.run(["memcached", "-V"], capture_output=True, text=True, timeout=5).stdout
        return out.strip()
    except (OSError, subprocess.SubprocessError):
        return "memcached ?"


# ---------------------------------------------------------------------------------------------
# measuring


@dataclass
class Case:
    name: str
    call: Callable[[], object]
    target: float | None = None  # max ratio to the floor, when the case has a target
    note: str = ""
    per_call_ns: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    batch: int = 0


@dataclass
class Group:
    title: str
    floor: Case
    cases: list[Case]
    extra: list[tuple[str, str, str, float, float | None]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def all(self) -> list[Case]:
        return [self.floor, *self.cases]


def calibrate(call: Callable[[], object], seconds: float) -> int:
    """Number of calls that take about ``seconds`` (best of three probes, so one stall does not
    shrink the batch)."""
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            call()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds / 10 or n >= 1 << 22:
            break
        n *= 4
    best = elapsed
    for _ in range(2):
        start = time.perf_counter()
        for _ in range(n):
            call()
        best = min(best, time.perf_counter() - start)
    return max(1, int(n * seconds / max(best, 1e-9)))


def time_batch(call: Callable[[], object], n: int) -> float:
    """Nanoseconds per call over ``n`` calls (garbage collector off, as timeit does)."""
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in range(n):
            call()
        return (time.perf_counter_ns() - start) / n
    finally:
        if gc_was_on:
            gc.enable()


def run_group(group: Group, rounds: int, batch_seconds: float) -> None:
    for case in group.all:
        case.call()  # warm: first-use costs (connections, generation reads) are not hits
        case.batch = calibrate(case.call, batch_seconds)
    for r in range(rounds):
        order = group.all if r % 2 == 0 else list(reversed(group.all))
        this_round = {}
        for case in order:
            this_round[case.name] = time_batch(case.call, case.batch)
        floor = this_round[group.floor.name]
        for case in group.all:
            case.per_call_ns.append(this_round[case.name])
            case.ratios.append(this_round[case.name] / floor)


def median(values: list[float]) -> float:
    return statistics.median(values)


# ---------------------------------------------------------------------------------------------
# groups


def memcached_group(address: str) -> Group:
    from pymemcache.client.base import Client

    import regions

    manager = regions.CacheManager({"mc": {"BACKEND": "memcached", "LOCATION": address, "TIMEOUT": 3600}},
                                   key_prefix="bench")

    @manager.region("mc")
    def product_list(category):
        return PAYLOAD

    product_list(42)
    # The floor reads the very item the region stores, over the region's own connection: memcached
    # hands each connection to one of its worker threads, and which core that thread wakes on moves
    # a GET between ~12 us and ~90 us here. A floor on another connection measures that luck.
    raw = manager["mc"].store.client
    wire = product_list.cache_key(42)
    loads = pickle.loads
    assert isinstance(raw, Client)

    def raw_get():
        return loads(raw.get(wire))[2]

    group = Group(
        "(a) memcached hit",
        Case("raw GET + pickle.loads, same item+socket", raw_get, note="floor"),
        [Case("regions memcached region", functools.partial(product_list, 42), target=1.10)],
        notes=["the references use sockets of their own, so their ratios also show which memcached "
               "worker thread serves them"],
    )
    assert product_list(42) == PAYLOAD

    try:
        from dogpile.cache import make_region

        dog = make_region().configure(
            "dogpile.cache.pymemcache", expiration_time=3600, arguments={"url": address}
        )

        @dog.cache_on_arguments()
        def dog_products(category):
            return PAYLOAD

        assert dog_products(42) == PAYLOAD
        group.cases.append(Case("dogpile.cache pymemcache backend", functools.partial(dog_products, 42)))
    except ImportError:
        group.skipped.append("dogpile.cache not installed (pip install dogpile.cache)")

    try:
        import memcache  # noqa: F401  (python-memcached, Beaker's ext:memcached client)
        from beaker.cache import CacheManager as BeakerManager

        beaker = BeakerManager(
            cache_regions={"bench_mc": {"type": "ext:memcached", "url": address, "expire": 3600,
                                        "memcache_module": "memcache", "lock_dir": tempfile.mkdtemp()}}
        )

        @beaker.region("bench_mc")
        def beaker_products(category):
            return PAYLOAD

        assert beaker_products(42) == PAYLOAD
        group.cases.append(
            Case("beaker ext:memcached (python-memcached)", functools.partial(beaker_products, 42))
        )
    except ImportError:
        group.skipped.append("python-memcached not installed: no Beaker ext:memcached reference")
    return group


def request_group() -> Group:
    import regions

    manager = regions.CacheManager({"req": {"BACKEND": "request"}, "mem": {"BACKEND": "memory"}})

    @manager.region("req")
    def current_user(user_id):
        return PAYLOAD

    @manager.region("mem")
    def memory_user(user_id):
        return PAYLOAD

    def dict_memo(func):
        memo: dict = {}

        @functools.wraps(func)
        def wrapper(*args):
            key = (args,)
            try:
                return memo[key]
            except KeyError:
                value = memo[key] = func(*args)
                return value

        return wrapper

    @dict_memo
    def memo_user(user_id):
        return PAYLOAD

    @functools.lru_cache(maxsize=None)  # noqa: UP033 - the name people know
    def lru_user(user_id):
        return PAYLOAD

    # The scope stays open for the whole group, as it would for one long request.
    scope = regions.request_scope()
    scope.__enter__()
    assert current_user(7) == PAYLOAD and current_user(7) is PAYLOAD

    group = Group(
        "(b) in-process hit",
        Case("dict-memo decorator (tuple key)", functools.partial(memo_user, 7), note="floor"),
        [
            Case("regions request region (in scope)", functools.partial(current_user, 7), target=5.0),
            Case("regions memory region", functools.partial(memory_user, 7)),
            Case("functools.lru_cache", functools.partial(lru_user, 7)),
        ],
    )

    try:
        from beaker.cache import CacheManager as BeakerManager

        beaker = BeakerManager(cache_regions={"bench_mem": {"type": "memory", "expire": 3600}})

        @beaker.region("bench_mem")
        def beaker_user(user_id):
            return PAYLOAD

        assert beaker_user(7) == PAYLOAD
        group.cases.append(Case("beaker memory region", functools.partial(beaker_user, 7)))
    except ImportError:  # pragma: no cover - Beaker is a dependency of regions
        group.skipped.append("beaker not importable")
    group.scope = scope  # type: ignore[attr-defined]
    return group


def file_group(workdir: Path, big: int) -> Group:
    import regions

    value = PAYLOAD
    manager = regions.CacheManager({
        "few": {"BACKEND": "file", "LOCATION": str(workdir / "few"), "TIMEOUT": None},
        "many": {"BACKEND": "file", "LOCATION": str(workdir / "many"), "TIMEOUT": None},
    })

    @manager.region("few")
    def page_few(n):
        return value

    @manager.region("many")
    def page_many(n):
        return value

    start = time.perf_counter()
    for i in range(10):
        page_few(i)
    for i in range(big):
        page_many(i)
    fill_seconds = time.perf_counter() - start

    # Hits cycle over many keys, so directory lookups are not always for the same file.
    few_keys = itertools.cycle(range(10))
    many_keys = itertools.cycle(range(0, big, max(1, big // 1000)))
    few_paths = itertools.cycle([page_few.cache_key(i) for i in range(10)])

    def read_raw():
        with open(next(few_paths), "rb") as f:
            return f.read()

    def hit_few():
        return page_few(next(few_keys))

    def hit_many():
        return page_many(next(many_keys))

    group = Group(
        "(c) file hit",
        Case("raw open().read() of an entry-sized file", read_raw, note="floor"),
        [
            Case("regions file region, 10 entries", hit_few),
            Case(f"regions file region, {big:,} entries", hit_many),
        ],
    )
    group.fill_seconds = fill_seconds  # type: ignore[attr-defined]

    from beaker.cache import Cache

    for label, count in (("10", 10), (f"{big:,}", big)):
        cache = Cache(f"bench-{count}", type="file", data_dir=str(workdir / f"beaker-{count}"))
        ns = cache.namespace
        ns.acquire_write_lock()  # one write of the whole namespace file (Beaker keeps one file per namespace)
        try:
            now = time.time()
            for i in range(count):
                ns[f"k{i}".encode()] = (now, None, value)  # Beaker's Cache turns str keys into bytes
        finally:
            ns.release_write_lock()
        keys = itertools.cycle([f"k{i}" for i in range(0, count, max(1, count // 1000))])
        get = cache.get
        assert get("k0") == value
        group.cases.append(Case(f"beaker file backend, {label} entries",
                                lambda get=get, keys=keys: get(next(keys))))
    return group


# ---------------------------------------------------------------------------------------------
# report


def fmt_us(ns: float) -> str:
    us = ns / 1000
    return f"{us:10.2f}" if us < 1000 else f"{us:10.0f}"


def report(groups: list[Group], header: str) -> tuple[str, list[dict]]:
    lines = [header, ""]
    width = 46
    lines.append(f"{'case':<{width}} {'median µs':>10} {'best µs':>10} {'vs floor':>9} {'best/best':>9}   "
                 f"{'target':<9} verdict")
    rows: list[dict] = []
    for group in groups:
        lines.append("")
        lines.append(group.title)
        floor_best = min(group.floor.per_call_ns)
        for case in group.all:
            us = median(case.per_call_ns)
            best = min(case.per_call_ns)
            ratio = median(case.ratios)
            if case is group.floor:
                target, verdict = "(floor)", ""
            elif case.target is not None:
                target = f"<= {case.target:.2f}x"
                verdict = "OK" if ratio <= case.target else "MISSED"
            else:
                target, verdict = "reference", ""
            lines.append(f"  {case.name:<{width - 2}} {fmt_us(us)} {fmt_us(best)} {ratio:8.2f}x "
                         f"{best / floor_best:8.2f}x   {target:<9} {verdict}")
            rows.append({"group": group.title, "case": case.name, "median_ns": us, "best_ns": best,
                         "ratio": ratio, "best_ratio": best / floor_best, "target": case.target,
                         "rounds": len(case.per_call_ns), "batch": case.batch})
        for label, _a, _b, ratio, target in group.extra:
            verdict = "" if target is None else ("OK" if ratio <= target else "MISSED")
            tgt = "" if target is None else f"<= {target:.2f}x"
            blank = ""
            lines.append(f"  {label:<{width - 2}} {blank:>21} {ratio:8.2f}x {blank:>9}   {tgt:<9} {verdict}")
            rows.append({"group": group.title, "case": label, "ratio": ratio, "target": target})
        for note in group.skipped:
            lines.append(f"  (skipped: {note})")
        for note in group.notes:
            lines.append(f"  ({note})")
        q1, _q2, q3 = statistics.quantiles(group.floor.per_call_ns, n=4)
        if q3 / q1 > 1.25:
            lines.append(f"  (noisy: the floor's middle half spans {q3 / q1:.2f}x between rounds; "
                         f"rerun on an idle machine)")
    return "\n".join(lines), rows


def paired_ratio(group: Group, a: str, b: str) -> float:
    ca = next(c for c in group.all if c.name == a)
    cb = next(c for c in group.all if c.name == b)
    return median([x / y for x, y in zip(ca.per_call_ns, cb.per_call_ns, strict=True)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per group (default 21, quick 5)")
    parser.add_argument("--entries", type=int, help="entries in the large file region (default 10000)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))  # run from a checkout without installing
    import regions

    rounds = args.rounds or (5 if args.quick else 21)
    batch_seconds = 0.01 if args.quick else 0.05
    big = args.entries or (1000 if args.quick else 10_000)

    server = Memcached()
    workdir = Path(tempfile.mkdtemp(prefix="regions-bench-"))
    started = time.perf_counter()
    groups: list[Group] = []
    try:
        a = memcached_group(server.address)
        # A loopback GET costs ~20 us or ~100 us depending on whether the other core is awake, and
        # that flips within tens of milliseconds: many short interleaved batches let the floor and
        # each case see the same state, so the per-round ratios stay comparable.
        run_group(a, rounds * 10, batch_seconds / 25)
        groups.append(a)

        b = request_group()
        try:
            run_group(b, rounds, batch_seconds)
        finally:
            b.scope.__exit__(None, None, None)  # type: ignore[attr-defined]
        groups.append(b)

        c = file_group(workdir, big)
        run_group(c, rounds, batch_seconds)
        few, many = c.cases[0].name, c.cases[1].name
        scaling = paired_ratio(c, many, few)
        c.extra.append((f"scaling: {big:,} entries / 10 entries", many, few, scaling, 1.30))
        groups.append(c)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    header = (
        f"regions {regions.__version__} hit-path benchmark — Python {platform.python_version()}, "
        f"{memcached_version()}, {os.cpu_count()} cores\n"
        f"{rounds} interleaved rounds per group, ~{batch_seconds * 1000:.0f} ms per batch; medians; "
        f"ratio = median of per-round ratios to the group's floor"
        + (" (--quick: smoke run, numbers are rough)" if args.quick else "")
    )
    text, rows = report(groups, header)
    print(text)
    print(f"\nfile region fill: {big + 10:,} entries written in {c.fill_seconds:.1f}s; "  # type: ignore[attr-defined]
          f"total run {time.perf_counter() - started:.1f}s")
    if args.json:
        args.json.write_text(json.dumps({"header": header, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
