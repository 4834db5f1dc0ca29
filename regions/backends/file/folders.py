"""The folders of a file region: can this process create and write one, who else could write
it, and making folders nobody else can write."""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import stat
import tempfile
from pathlib import Path
from typing import Any


def unwritable(location: Any) -> str | None:
    """Why ``location`` cannot be created and written, tried for real; ``None`` when it can.

    ``os.access`` says yes to root almost everywhere (even under ``/proc``), so this makes the
    missing folders and a probe file in the last one. Whatever it made is removed again, whether it
    passes or fails half-way: the region's store makes the folder on its first write.
    """
    for _ in range(5):  # another process may remove a folder it made between our steps: again
        why = _try_writing(Path(location))
        if why is None or "No such file or directory" not in why:
            return why
    return why


def _try_writing(path: Path) -> str | None:
    missing: list[Path] = []
    folder = path
    while not os.path.lexists(folder) and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    made: list[Path] = []
    try:
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:  # made meanwhile by another process: fine if it is a folder
                if not folder.is_dir() and os.path.lexists(folder):  # gone again: tried again
                    raise
                continue
            made.append(folder)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".tmp-check-")  # a cull removes a stray one
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(probe)
    except OSError as exc:
        where = exc.filename if exc.filename is not None else path
        return f"{str(where)!r}: {exc.strerror or exc}"
    finally:
        for folder in reversed(made):
            with contextlib.suppress(OSError):  # not empty: a store or another process uses it now
                folder.rmdir()
    return None


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def folder_exposure(location: Any) -> tuple[str, str] | None:
    """``(what is wrong, remedy)`` when users other than this process's could plant entries in the
    existing folder ``location``: it is owned by another user, or writable by group or others
    (``mode & 0o022``). ``None`` when neither holds or the folder does not exist (yet).
    """
    try:
        st = os.stat(location)
    except (OSError, TypeError, ValueError):
        return None
    if not stat.S_ISDIR(st.st_mode):
        return None
    uid = os.geteuid()
    wrong = []
    if st.st_uid != uid:
        wrong.append(f"is owned by {_user(st.st_uid)}, not by this process's user {_user(uid)}")
    if st.st_mode & 0o022:
        who = " and ".join(w for w, bit in (("group", 0o020), ("others", 0o002)) if st.st_mode & bit)
        wrong.append(f"is writable by {who} (mode {stat.S_IMODE(st.st_mode):o})")
    if not wrong:
        return None
    quoted = shlex.quote(os.fspath(location))
    try:
        owner = pwd.getpwuid(uid).pw_name
    except KeyError:
        owner = str(uid)
    chown = f"chown {owner} {quoted} && " if st.st_uid != uid else ""
    return (
        f"{', and '.join(wrong)}: other users can plant, change or remove its entries",
        f"Run `{chown}chmod 700 {quoted}`, so that only this process's user can write it.",
    )


def make_private_dirs(path: str) -> None:
    """``mkdir -p`` where every folder made is ``0o700`` (``os.makedirs`` gives all but the last the
    umask's mode): nobody else may plant entries in a folder this process creates. A relative
    ``path`` ends, going up, at ``''`` (``os.path.dirname("cache")``): the working directory, which
    exists, so it is never made."""
    missing = []
    while path and not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass
