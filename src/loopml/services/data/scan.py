"""Finding the files of a working copy and fingerprinting their stat identities (stdlib only).

Kept free of heavy imports: the quick CLI path (``quick.py``) uses it before
SQLAlchemy or Typer are loaded, and the full data service uses the same code, so
both see exactly the same files.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod

from loopml.errors import DataInputError

TYPE_CHECKING = False  # not `import typing`: this module is on the quick CLI path
if TYPE_CHECKING:
    from typing import NamedTuple

    class StatEntry(NamedTuple):
        """A file found on disk: its relative path, absolute path and stat identity."""

        rel: str
        abspath: str
        inode: int
        size: int
        mtime_ns: int
else:
    from collections import namedtuple

    StatEntry = namedtuple("StatEntry", "rel abspath inode size mtime_ns")


def scan_path(path: str | os.PathLike[str]) -> tuple[str, list[StatEntry]]:
    """(kind, files) under ``path``, sorted by relative path; errors name the offending path.

    Directory symlinks are followed once; a directory that contains itself is an error.
    """
    shown = os.fspath(path)
    try:
        st = os.stat(shown)
    except FileNotFoundError as exc:
        if os.path.islink(shown):
            raise DataInputError(f"The path {shown!r} is a broken symlink.", hint="Fix or remove the link.") from exc
        raise DataInputError(f"The path {shown!r} does not exist.",
                             hint="Check the spelling and the current directory.") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DataInputError(f"The path {shown!r} is a symlink loop.", hint="Fix or remove the link.") from exc
        raise DataInputError(f"Cannot read {shown!r}: {exc.strerror}.") from exc
    if stat_mod.S_ISREG(st.st_mode):
        name = os.path.basename(os.path.normpath(shown))
        return "file", [StatEntry(name, os.path.realpath(shown), st.st_ino, st.st_size, st.st_mtime_ns)]
    if not stat_mod.S_ISDIR(st.st_mode):
        raise DataInputError(f"The path {shown!r} is neither a file nor a directory.")
    out: list[StatEntry] = []
    append = out.append
    seen: set[tuple[int, int]] = set()
    is_dir, is_reg = stat_mod.S_ISDIR, stat_mod.S_ISREG
    make = tuple.__new__  # builds a StatEntry without the Python-level __new__ of a named tuple

    def walk(dir_fd: int, d: str, rel: str, dst: os.stat_result) -> None:
        # Entries are stat'ed relative to an open directory (fstatat), sparing the kernel a path walk each.
        ident = (dst.st_dev, dst.st_ino)
        if ident in seen:
            raise DataInputError(f"The directory {d!r} is a symlink loop (it contains itself).",
                                 hint="Remove the link or add a subdirectory instead.")
        seen.add(ident)
        try:
            with os.scandir(dir_fd) as it:
                entries = list(it)
        except OSError as exc:
            raise DataInputError(f"Cannot list the directory {d!r}: {exc.strerror}.",
                                 hint="Check its permissions.") from exc
        for e in entries:
            name = e.name
            if not rel and name == ".loopml":
                continue
            try:
                est = e.stat()  # follows symlinks
            except OSError as exc:
                path = f"{d}/{name}"
                if exc.errno == errno.ELOOP:
                    raise DataInputError(f"The path {path!r} is a symlink loop.", hint="Fix or remove the link.") from exc
                raise DataInputError(f"Cannot read {path!r}: {exc.strerror or exc}.",
                                     hint="Fix the link or its permissions.") from exc
            mode = est.st_mode
            if is_dir(mode):
                try:
                    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=dir_fd)
                except OSError as exc:
                    raise DataInputError(f"Cannot list the directory {d + '/' + name!r}: {exc.strerror}.",
                                         hint="Check its permissions.") from exc
                try:
                    walk(fd, f"{d}/{name}", f"{rel}{name}/", est)
                finally:
                    os.close(fd)
            elif is_reg(mode):
                append(make(StatEntry, (f"{rel}{name}", f"{d}/{name}", est.st_ino, est.st_size, est.st_mtime_ns)))
        seen.discard(ident)

    top = os.path.abspath(shown)
    try:
        top_fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise DataInputError(f"Cannot list the directory {shown!r}: {exc.strerror}.",
                             hint="Check its permissions.") from exc
    try:
        walk(top_fd, top.rstrip("/") if top != "/" else "", "", st)
    finally:
        os.close(top_fd)
    out.sort()
    return "directory", out


def tree_fingerprint(kind: str, entries: list[StatEntry]) -> str:
    """One digest of every file's (relative path, inode, size, mtime): equal means nothing was touched.

    It rests on the same assumption as the per-file hash state cache (an unchanged
    stat identity means unchanged bytes); it is a cache key, not a content hash.
    """
    from blake3 import blake3  # loads in about a millisecond, unlike hashlib (OpenSSL)

    text = kind + "".join([f"\n{e.rel}\0{e.inode}\0{e.size}\0{e.mtime_ns}" for e in entries])
    return blake3(text.encode("utf-8", "surrogateescape")).hexdigest()[:40]
