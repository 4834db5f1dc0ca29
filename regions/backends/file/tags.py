"""Tag versions of a file region (:mod:`regions.tags`): one small file per tag, ``store.tags``.

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
from pathlib import Path

from .folders import make_private_dirs
from .layout import TAGS_FOLDER

_READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


class FileTags:
    """The tag versions of the region ``identity`` under ``root``
    (a :class:`~regions.backends.contract.TagVersions`)."""

    def __init__(self, root: str | Path, identity: str, region: str) -> None:
        self.folder = os.path.join(root, TAGS_FOLDER)
        self.identity = identity
        self.region = region

    def path(self, name: str) -> str:
        """The file of tag ``name``."""
        digest = hashlib.blake2b(
            f"{self.identity}\0{name}".encode("utf-8", "surrogatepass"), digest_size=20
        ).hexdigest()
        return os.path.join(self.folder, f"{digest}.tag")

    def read(self, names: list[str]) -> list[int | None]:
        return [_read(self.path(name)) for name in names]

    def create(self, names: list[str]) -> list[int]:
        out = []
        for name in names:
            path = self.path(name)
            version = _read(path)
            if version is None:
                tmp = _write_temp(self.folder)
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

    def bump(self, names: list[str]) -> None:
        for name in names:
            path = self.path(name)
            if not os.path.exists(path):
                continue  # no version: no entry carries one of it
            tmp = _write_temp(self.folder)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise


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
