"""Tag versions of a file region (:mod:`regions.tags`): one small file per tag.

``LOCATION/.tags/<digest of region identity and tag>.tag`` holds the tag's version, a random
63-bit integer in decimal. A bump writes a new random version to a temporary file and renames it
over the old one, so readers see the old version or the new one, and two processes bumping at
once cannot lose a bump (each one makes the version differ from every version read before it).
A creation links its file into place, so only the first of several creators wins. Entry folders
never start with ``.``: ``clear()``, culls and ``count()`` never walk this folder.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
from typing import TYPE_CHECKING, Any

from .folders import make_private_dirs

if TYPE_CHECKING:
    from . import FileStore

TAGS_FOLDER = ".tags"
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


def _read(path: str) -> int | None:
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return None
    try:
        data = os.read(fd, 64)
    finally:
        os.close(fd)
    try:
        return int(data)
    except ValueError:  # damaged: entries carrying it miss until a bump replaces it
        return None


def _write_temp(folder: str) -> str:
    """A temporary file in ``folder`` holding a new version; its path."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    except FileNotFoundError:
        make_private_dirs(folder)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(str(secrets.randbits(63)).encode())
    return tmp


class FileTagStore:
    """Mixed into :class:`~regions.backends.file.FileStore`."""

    def tag_path(self: FileStore, name: str) -> str:  # type: ignore[misc]
        digest = hashlib.blake2b(
            f"{self.identity}\0{name}".encode("utf-8", "surrogatepass"), digest_size=20
        ).hexdigest()
        return os.path.join(self.root, TAGS_FOLDER, f"{digest}.tag")

    def read_tags(self: FileStore, names: list[str]) -> list[int | None]:  # type: ignore[misc]
        return [_read(self.tag_path(name)) for name in names]

    def create_tags(self: FileStore, names: list[str]) -> list[int]:  # type: ignore[misc]
        out = []
        for name in names:
            path = self.tag_path(name)
            version = _read(path)
            if version is None:
                tmp = _write_temp(os.path.dirname(path))
                try:
                    os.link(tmp, path)  # fails if another process created it first: theirs wins
                except FileExistsError:
                    if _read(path) is None:  # damaged: replaced (entries carrying it miss)
                        os.replace(tmp, path)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
                version = _read(path)
                if version is None:
                    raise OSError(f"cache region {self.region!r}: tag file {path} cannot be read back")
            out.append(version)
        return out

    def bump_tags(self: FileStore, names: list[str]) -> None:  # type: ignore[misc]
        for name in names:
            path = self.tag_path(name)
            if not os.path.exists(path):
                continue  # no version: no entry carries one of it
            tmp = _write_temp(os.path.dirname(path))
            try:
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise


class StoreTags:
    """The store's tag versions as :class:`~regions.backends.contract.TagVersions` (``store.tags``)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def read(self, names: list[str]) -> list[int | None]:
        return self.store.read_tags(names)

    def create(self, names: list[str]) -> list[int]:
        return self.store.create_tags(names)

    def bump(self, names: list[str]) -> None:
        self.store.bump_tags(names)
