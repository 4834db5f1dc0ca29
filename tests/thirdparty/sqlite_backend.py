"""``sqlite``: a third-party backend in one module, on the standard library's :mod:`sqlite3`.

The worked example of ``regions/backends/contract.py``: it imports only that module,
:mod:`regions.errors` and :mod:`regions.signing`, and passes the contract kit
(``tests/thirdparty/test_sqlite_backend.py``). Use it as ``"BACKEND":
"tests.thirdparty.sqlite_backend:SqliteNamespaceManager"`` with ``"LOCATION"`` the database file.

Every process and thread on the host shares the file. The tables:

* ``entries``: one row per key; ``data`` is :data:`MAGIC`, a tag over namespace, key and pickle
  (:mod:`regions.signing`), then the pickled entry tuple; ``expires`` lets SQL skip dead rows;
* ``locks``: creation locks, one row per key being computed, with an expiry (:class:`SqliteLock`);
* ``tags``: tag versions (:class:`SqliteTags`); ``log_heads`` / ``log_records``: invalidation logs
  (:class:`SqliteLog`), so a ``memory`` region with ``sync_with`` can name a sqlite region.

Names (namespaces, keys, tags) are stored as UTF-8 bytes with ``surrogatepass``: any ``str`` fits.
Each thread has its own connection, in WAL mode (readers never wait for a writer); a forked child
opens its own (SQLite: never use a connection across ``fork``). There is no size bound: a region's
dead rows are purged every :data:`PURGE_EVERY` of its writes.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import secrets
import sqlite3
import threading
import time
from collections.abc import Hashable, Iterator, Mapping
from typing import Any, cast

from regions.backends.contract import BOOKKEEPING, Backend, Entry, Store, poll
from regions.errors import UnstorableValue
from regions.signing import TAG_SIZE, RejectedEntry

#: Storage format of ``entries.data``: ``MAGIC | tag | pickle``. A change to those bytes bumps it;
#: rows of another format are read as misses (and replaced by the next write).
FORMAT = 1
MAGIC = b"SQ%d" % FORMAT
#: Records an invalidation log keeps (a process further behind resets: drops its local entries).
KEEP = 1000
#: Writes of a region between two purges of its dead rows (expired for longer than ``stale``).
PURGE_EVERY = 1000

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (namespace BLOB, key BLOB, region BLOB NOT NULL, expires REAL,
                                    data BLOB NOT NULL, PRIMARY KEY (namespace, key));
CREATE INDEX IF NOT EXISTS entries_region ON entries (region);
CREATE TABLE IF NOT EXISTS locks (namespace BLOB, key BLOB, owner TEXT NOT NULL, expires REAL NOT NULL,
                                  PRIMARY KEY (namespace, key));
CREATE TABLE IF NOT EXISTS tags (region BLOB, name BLOB, version INTEGER NOT NULL,
                                 PRIMARY KEY (region, name));
CREATE TABLE IF NOT EXISTS log_heads (name BLOB PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS log_records (name BLOB, seq INTEGER, record BLOB NOT NULL,
                                        PRIMARY KEY (name, seq));
"""


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` (the write lock first: two writers never deadlock) ... ``COMMIT``."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class SqliteStore(Store):
    """One region's view of the database file ``LOCATION``; its rows carry its identity."""

    name = "sqlite"
    needs_location = True
    signs = True
    options_schema = {
        "timeout": ((int, float), 5.0, "seconds a call waits for another connection's write "
                    "(SQLite's busy timeout) before it fails"),
    }

    def __init__(self, region: str, location: Any, options: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(region, location, options, **kwargs)
        self.path = os.fspath(location)
        self.timeout = float(self.options.get("timeout", 5.0))
        self.owner = _utf8(self.identity)  # the ``region`` column of this region's rows
        self.bookkeeping = _utf8(f"{self.identity}:{BOOKKEEPING}")  # never counted nor cleared
        self.tags = SqliteTags(self)
        self.writes = 0
        self._local = threading.local()  # .conn: this thread's connection

    @classmethod
    def check_location(cls, location: Any) -> str | None:
        if not isinstance(location, (str, os.PathLike)) or not str(location).strip():
            return "LOCATION must be the path of a database file (str or pathlib.Path)"
        if str(location) == ":memory:" or str(location).startswith("file:"):
            return "LOCATION must be a file path that every process can open (not ':memory:' or a URI)"
        return None

    def db(self) -> sqlite3.Connection:
        """This thread's connection, opened (and the tables made) on first use."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), mode=0o700, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)  # autocommit
            self._set_up(conn)
            self._local.conn = conn
        return conn

    def _set_up(self, conn: sqlite3.Connection) -> None:
        """WAL mode and the tables. Switching a new file to WAL takes an exclusive lock that SQLite's
        busy timeout does not wait for ("database is locked" when connections open at once): retried
        until ``timeout``."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")  # durable enough for a cache, and faster
                conn.executescript(SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

    def namespace(self, namespace: str) -> SqliteNamespaceManager:
        return SqliteNamespaceManager(namespace, self)

    def clear(self) -> None:
        """Delete this region's rows (its bookkeeping excepted); other regions' rows stay."""
        self.db().execute(
            "DELETE FROM entries WHERE region = ? AND namespace != ?", (self.owner, self.bookkeeping)
        )

    def count(self) -> int:
        """Rows of this region that can still be served (fresh, or expired within ``stale``)."""
        row = self.db().execute(
            "SELECT count(*) FROM entries WHERE region = ? AND namespace != ? "
            "AND (expires IS NULL OR expires + ? > ?)",
            (self.owner, self.bookkeeping, self.stale, time.time()),
        ).fetchone()
        return int(row[0])

    def ping(self) -> bool:
        try:
            self.db().execute("SELECT 1 FROM entries LIMIT 1").fetchall()
        except (sqlite3.Error, OSError):
            return False
        return True

    def wrote(self) -> None:
        """Count a write; every :data:`PURGE_EVERY` writes, delete this region's dead rows."""
        self.writes += 1  # approximate across threads: it only spaces the purges
        if self.writes % PURGE_EVERY == 0:
            self.db().execute(
                "DELETE FROM entries WHERE region = ? AND expires + ? < ?",
                (self.owner, self.stale, time.time()),
            )

    def sync_storage(self, name: str) -> SqliteLog:
        return SqliteLog(self, name)

    def derive(self, region: str, identity: str) -> SqliteStore:
        """The same file for a tiered region's shared tier: its rows carry its own identity."""
        return SqliteStore(region, self.location, self.options, identity=identity, signer=self.signer)

    def close(self) -> None:
        """Close this thread's connection and forget the others: they close when garbage collected
        (closing a connection that another thread is using can crash the process)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local = threading.local()  # a later call opens a new connection
        super().close()

    def after_fork(self) -> None:
        super().after_fork()
        self._local = threading.local()  # the parent's connections are never used here


class SqliteNamespaceManager(Backend):
    """One namespace's rows of a :class:`SqliteStore` (the class ``BACKEND`` names)."""

    store_class = SqliteStore
    store: SqliteStore

    def __init__(self, namespace: str, store: Any = None, **beaker_options: Any) -> None:
        super().__init__(namespace, store, **beaker_options)
        self._ns = _utf8(namespace)

    def _head(self, key: bytes) -> bytes:
        """What the tag covers besides the pickle: format, namespace and key, length-prefixed."""
        return b"%s:%d:%s:%d:%s" % (MAGIC, len(self._ns), self._ns, len(key), key)

    def get_entry(self, key: Hashable) -> Entry | None:
        wire, store = _utf8(str(key)), self.store
        row = store.db().execute(
            "SELECT data FROM entries WHERE namespace = ? AND key = ? "
            "AND (expires IS NULL OR expires + ? > ?)", (self._ns, wire, store.stale, time.time()),
        ).fetchone()
        if row is None or not isinstance(row[0], bytes) or not row[0].startswith(MAGIC):
            return None  # absent, dead, or of another format
        data = memoryview(row[0])
        tag, payload = data[len(MAGIC) : len(MAGIC) + TAG_SIZE], data[len(MAGIC) + TAG_SIZE :]
        if not store.signer.check(tag, self._head(wire), payload):
            raise RejectedEntry("a row whose tag does not match its namespace, key and bytes")
        entry: Entry = pickle.loads(payload)  # ours: checked above
        return entry

    def set_entry(self, key: Hashable, entry: Entry) -> None:
        wire, store = _utf8(str(key)), self.store
        try:
            payload = pickle.dumps(entry, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise UnstorableValue(store.region, entry[2], exc) from exc
        data = MAGIC + store.signer.tag(self._head(wire), payload) + payload
        expires = None if entry[1] is None else entry[0] + entry[1]
        store.db().execute(
            "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?)",
            (self._ns, wire, store.owner, expires, data),
        )
        store.wrote()

    def delete_entry(self, key: Hashable) -> None:
        self.store.db().execute(
            "DELETE FROM entries WHERE namespace = ? AND key = ?", (self._ns, _utf8(str(key)))
        )

    def do_remove(self) -> None:
        self.store.db().execute("DELETE FROM entries WHERE namespace = ?", (self._ns,))

    def keys(self) -> list[Any]:
        rows = self.store.db().execute(
            "SELECT key FROM entries WHERE namespace = ? AND (expires IS NULL OR expires > ?)",
            (self._ns, time.time()),
        )
        return [key.decode("utf-8", "surrogatepass") for (key,) in rows]

    def shared_lock(self, key: Hashable) -> SqliteLock:
        return SqliteLock(self.store, self._ns, _utf8(str(key)))


class SqliteLock:
    """The creation lock of one key for every process on the host: a row of ``locks`` (a
    :class:`~regions.backends.contract.SharedLock`). The row expires after ``lock_timeout``
    seconds, so a holder that died frees it by itself."""

    def __init__(self, store: SqliteStore, namespace: bytes, key: bytes) -> None:
        self.store, self.name = store, (namespace, key)
        self.owner = secrets.token_hex(8)

    def acquire(self, timeout: float) -> bool:
        return poll(self._try, timeout, 0.001, 0.05)

    def _try(self) -> bool:
        db, now = self.store.db(), time.time()
        db.execute("DELETE FROM locks WHERE namespace = ? AND key = ? AND expires <= ?", (*self.name, now))
        taken = db.execute(
            "INSERT OR IGNORE INTO locks VALUES (?, ?, ?, ?)",
            (*self.name, self.owner, now + max(1.0, self.store.lock_timeout)),
        )
        return taken.rowcount == 1

    def release(self) -> None:
        self.store.db().execute(
            "DELETE FROM locks WHERE namespace = ? AND key = ? AND owner = ?", (*self.name, self.owner)
        )


class SqliteTags:
    """The tag versions of one region (a :class:`~regions.backends.contract.TagVersions`): a
    random 64-bit version per tag, made new by SQLite's ``random()`` on every bump."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    def _version(self, db: sqlite3.Connection, name: str) -> int | None:
        row = db.execute(
            "SELECT version FROM tags WHERE region = ? AND name = ?", (self.store.owner, _utf8(name))
        ).fetchone()
        return None if row is None else int(row[0])

    def read(self, names: list[str]) -> list[int | None]:
        db = self.store.db()
        return [self._version(db, name) for name in names]

    def create(self, names: list[str]) -> list[int]:
        with _transaction(self.store.db()) as db:
            for name in names:  # the first creator wins; the others read its version
                db.execute(
                    "INSERT OR IGNORE INTO tags VALUES (?, ?, random())", (self.store.owner, _utf8(name))
                )
            return [cast(int, self._version(db, name)) for name in names]  # all made just above

    def bump(self, names: list[str]) -> None:
        with _transaction(self.store.db()) as db:
            for name in names:  # a tag without a version stays without (no entry carries one)
                db.execute(
                    "UPDATE tags SET version = random() WHERE region = ? AND name = ?",
                    (self.store.owner, _utf8(name)),
                )


class SqliteLog:
    """The invalidation log ``name`` (a :class:`~regions.backends.contract.LogStorage`): its
    counter in ``log_heads``, record ``n`` in ``log_records``; an append is one transaction."""

    def __init__(self, store: SqliteStore, name: str) -> None:
        self.store, self.name = store, _utf8(name)

    def _seq(self, db: sqlite3.Connection) -> int | None:
        row = db.execute("SELECT seq FROM log_heads WHERE name = ?", (self.name,)).fetchone()
        return None if row is None else int(row[0])

    def head(self) -> int:
        db = self.store.db()
        seq = self._seq(db)
        if seq is None:  # a new log starts above any value used before: the clock in ms
            start = time.time_ns() // 1_000_000
            db.execute("INSERT OR IGNORE INTO log_heads VALUES (?, ?)", (self.name, start))
            return self.head()  # ours, or the one another process made first
        return seq

    def append(self, record: bytes) -> int:
        with _transaction(self.store.db()) as db:
            seq = self._seq(db)
            seq = (time.time_ns() // 1_000_000 if seq is None else seq) + 1
            db.execute("INSERT OR REPLACE INTO log_heads VALUES (?, ?)", (self.name, seq))
            db.execute("INSERT OR REPLACE INTO log_records VALUES (?, ?, ?)", (self.name, seq, record))
            db.execute("DELETE FROM log_records WHERE name = ? AND seq <= ?", (self.name, seq - KEEP))
        return seq

    def records(self, first: int, last: int) -> dict[int, bytes]:
        rows = self.store.db().execute(
            "SELECT seq, record FROM log_records WHERE name = ? AND seq BETWEEN ? AND ?",
            (self.name, first, last),
        )
        return {int(seq): bytes(record) for seq, record in rows}
