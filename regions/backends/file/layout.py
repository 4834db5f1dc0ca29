"""Where a file region keeps what under ``LOCATION``, and walking its entry folders::

    <namespace folder>/<aa>/<digest>.entry       one entry (folder_name(namespace); digest of the key)
    <namespace folder>/<aa>/.tmp-*               a write under way (renamed over its entry)
    .bookkeeping/<namespace folder>/...          the region's own figures (:mod:`regions.fleet`)
    .locks/keys.lock, .locks/culled              creation locks (:mod:`.locks`); mtime: last cull
    .tags/<digest>.tag                           tag versions (:mod:`.tags`)
    .sync/<digest>/                              invalidation logs (:mod:`.sync_log`)
    .tiered/<unique_name(identity)>/             a tiered region's shared tier (a region's folder)

One level of 256 folders (``aa``: the digest's first two hex digits) under a namespace folder:
a hit's path lookup meets one folder the kernel may not have cached, and a count can still be
estimated by listing a few of them. Version 2 had two levels (``aa/bb``): with 10,000 entries
nearly every entry had a folder of its own, and a hit cost 1.12-1.15x a hit among 10 entries
(1.08-1.11x with one level; 1.06-1.11x with none, where no count could be estimated without
listing every entry).

Namespace folders never start with ``.``; whatever does, at the top, is never walked as entries.
Their names end with the storage format's version (:data:`.entry_format.VERSION`): entries written
by another version are in other folders, never read (misses), and removed by culls.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

from .entry_format import VERSION

ENTRY_SUFFIX = ".entry"
#: Folder levels between a namespace folder and its entry files (``aa``).
ENTRY_FOLDER_LEVELS = 1
TEMP_PREFIX = ".tmp-"
LOCKS_FOLDER = ".locks"
TAGS_FOLDER = ".tags"
SYNC_FOLDER = ".sync"
TIERED_FOLDER = ".tiered"
BOOKKEEPING_FOLDER = ".bookkeeping"

_STEM_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def folder_name(namespace: str) -> str:
    """The folder of a namespace's entries, ``<unique_name(namespace)>.v<VERSION>``."""
    return f"{unique_name(namespace)}.v{VERSION}"


def unique_name(text: str) -> str:
    """``<readable stem>-<128-bit digest of text>``: distinct for distinct texts, never ``.``-first."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    stem = _STEM_UNSAFE.sub("_", text).strip("._-")
    if len(stem) > 60:
        stem = f"{stem[:20]}_{stem[-39:]}"
    return f"{stem}-{digest}" if stem else digest


def walk(top: str | Path) -> Iterator[tuple[str, list[str]]]:
    """``(folder, file names)`` of every folder under ``top`` but the top-level ones whose name
    starts with ``.`` (locks, tags, logs, tiered regions' folders, bookkeeping)."""
    top = str(top)
    for dirpath, dirnames, filenames in os.walk(top):
        if dirpath == top:
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        yield dirpath, filenames


def entry_files(top: str | Path) -> Iterator[Path]:
    """The entry files that :func:`walk` finds."""
    for dirpath, filenames in walk(top):
        for name in filenames:
            if name.endswith(ENTRY_SUFFIX):
                yield Path(dirpath, name)
