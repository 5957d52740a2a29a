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
from loopml.parallel import fork_is_safe, usable_cpus

TYPE_CHECKING = False  # not `import typing`: this module is on the quick CLI path
if TYPE_CHECKING:
    from collections.abc import Callable
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


def scan_path(path: str | os.PathLike[str]) -> tuple[str, list[StatEntry], str]:
    """(kind, files, fingerprint) of ``path``; files are sorted by relative path; errors name the offending path.

    Directory symlinks are followed once; a directory that contains itself is an error.
    The fingerprint is the one ``fingerprint_path`` gives for the same tree.
    """
    out: list[StatEntry] = []
    kind, fingerprint = _scan(path, out)
    out.sort()
    return kind, out, fingerprint


def fingerprint_path(path: str | os.PathLike[str], *, fork: bool = False) -> tuple[str, str]:
    """(kind, fingerprint) of ``path`` without building its file list: what a quick "nothing changed?" needs.

    The fingerprint is one digest of every file's (relative path, inode, size, mtime): equal means
    nothing was touched. It rests on the same assumption as the per-file hash state cache (an
    unchanged stat identity means unchanged bytes); it is a cache key, not a content hash.

    With ``fork`` (for a single-threaded process only, such as the quick CLI path), a forked child
    stats half of the top directory's subdirectories while this process stats the other half: the
    ``stat`` calls are most of the time, and in one process they run one at a time (as git's
    preload-index, which lstat's in parallel).
    """
    return _scan(path, None, fork=fork and _may_fork())


def _may_fork() -> bool:
    return fork_is_safe() and usable_cpus() > 1


def _scan(path: str | os.PathLike[str], out: list[StatEntry] | None, *, fork: bool = False) -> tuple[str, str]:
    """Walk ``path`` (directories in sorted name order), appending its files to ``out`` unless None."""
    from blake3 import blake3  # loads in about a millisecond, unlike hashlib (OpenSSL)

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
    walk = _Walk(out)
    if stat_mod.S_ISREG(st.st_mode):
        name = os.path.basename(os.path.normpath(shown))
        walk.lines.append(b"file")
        walk.line("", [name], [st.st_ino, st.st_size, st.st_mtime_ns])
        if out is not None:
            out.append(StatEntry(name, os.path.realpath(shown), st.st_ino, st.st_size, st.st_mtime_ns))
        return "file", blake3(b"".join(walk.lines)).hexdigest()[:40]
    if not stat_mod.S_ISDIR(st.st_mode):
        raise DataInputError(f"The path {shown!r} is neither a file nor a directory.")
    walk.lines.append(b"directory")
    top = os.path.abspath(shown)
    d = top.rstrip("/") if top != "/" else ""
    try:
        top_fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise DataInputError(f"Cannot list the directory {shown!r}: {exc.strerror}.",
                             hint="Check its permissions.") from exc
    try:
        walk.seen.add((st.st_dev, st.st_ino))
        subdirs = walk.directory(top_fd, d, "")
        theirs: list[tuple[str, os.stat_result]] = []
        if fork and len(subdirs) > 1:
            subdirs, theirs = subdirs[:len(subdirs) // 2], subdirs[len(subdirs) // 2:]
        if not theirs:
            walk.subtrees(top_fd, d, "", subdirs)
        else:
            mark = len(walk.lines)

            def child_half() -> bytes:
                walk.subtrees(top_fd, d, "", theirs)
                return b"".join(walk.lines[mark:])

            wait = _in_child(child_half)
            try:
                walk.subtrees(top_fd, d, "", subdirs)
            finally:
                sent = wait()
            if sent is None:  # the child failed: walk its half here, which raises the proper error if any
                walk.subtrees(top_fd, d, "", theirs)
            else:
                walk.lines.append(sent)
    finally:
        os.close(top_fd)
    return "directory", blake3(b"".join(walk.lines)).hexdigest()[:40]


class _Walk:
    """One walk of a directory tree: the fingerprint's lines and, unless ``out`` is None, the files found.

    The fingerprint hashes one line per directory, in walk order: its relative path, its files'
    names and their (inode, size, mtime) numbers. Names hold neither "\\0" nor "/", so lines cannot blur.
    """

    def __init__(self, out: list[StatEntry] | None) -> None:
        self.out = out
        self.lines: list[bytes] = []
        self.seen: set[tuple[int, int]] = set()  # (device, inode) of the directories being walked

    def line(self, rel: str, names: list[str], nums: list[int]) -> None:
        self.lines.append(("\n" + rel + "\0" + "\0".join(names) + "\0" + str(nums)).encode("utf-8", "surrogateescape"))

    def subtrees(self, dir_fd: int, d: str, rel: str, subdirs: list[tuple[str, os.stat_result]]) -> None:
        for name, est in subdirs:
            ident = (est.st_dev, est.st_ino)
            if ident in self.seen:
                raise DataInputError(f"The directory {d + '/' + name!r} is a symlink loop (it contains itself).",
                                     hint="Remove the link or add a subdirectory instead.")
            try:
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=dir_fd)
            except OSError as exc:
                raise DataInputError(f"Cannot list the directory {d + '/' + name!r}: {exc.strerror}.",
                                     hint="Check its permissions.") from exc
            self.seen.add(ident)
            try:
                self.subtrees(fd, f"{d}/{name}", f"{rel}{name}/", self.directory(fd, f"{d}/{name}", f"{rel}{name}/"))
            finally:
                os.close(fd)
                self.seen.discard(ident)

    def directory(self, dir_fd: int, d: str, rel: str) -> list[tuple[str, os.stat_result]]:
        """Stat one directory's entries (relative to its open descriptor: fstatat, no path walk each);
        add its line and files; return its subdirectories."""
        try:
            names = os.listdir(dir_fd)
        except OSError as exc:
            raise DataInputError(f"Cannot list the directory {d!r}: {exc.strerror}.",
                                 hint="Check its permissions.") from exc
        names.sort()
        files: list[str] = []
        nums: list[int] = []  # (inode, size, mtime) of each file, flat
        subdirs: list[tuple[str, os.stat_result]] = []
        is_dir, is_reg, stat_at = stat_mod.S_ISDIR, stat_mod.S_ISREG, os.stat
        for name in names:
            if not rel and name == ".loopml":
                continue
            try:
                est = stat_at(name, dir_fd=dir_fd)  # follows symlinks
            except OSError as exc:
                path = f"{d}/{name}"
                if exc.errno == errno.ELOOP:
                    raise DataInputError(f"The path {path!r} is a symlink loop.", hint="Fix or remove the link.") from exc
                raise DataInputError(f"Cannot read {path!r}: {exc.strerror or exc}.",
                                     hint="Fix the link or its permissions.") from exc
            mode = est.st_mode
            if is_reg(mode):
                files.append(name)
                nums += (est.st_ino, est.st_size, est.st_mtime_ns)
            elif is_dir(mode):
                subdirs.append((name, est))
        self.line(rel, files, nums)
        if self.out is not None:
            append, make, prefix = self.out.append, tuple.__new__, d + "/"
            for i, name in enumerate(files):  # tuple.__new__: a StatEntry without the named tuple's Python __new__
                append(make(StatEntry, (rel + name, prefix + name, nums[3 * i], nums[3 * i + 1], nums[3 * i + 2])))
        return subdirs


def _in_child(work: Callable[[], bytes]) -> Callable[[], bytes | None]:
    """Start ``work`` in a forked child; the function returned waits for its bytes (None if it failed).

    Call the returned function in every case (it reaps the child). The child leaves through
    ``os._exit``: no atexit handlers, no flush of the parent's buffered output.
    """
    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        return lambda: None
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        code = 1
        try:
            os.close(r)
            view = memoryview(work())
            while view:
                view = view[os.write(w, view):]
            code = 0
        finally:
            os._exit(code)
    os.close(w)

    def result() -> bytes | None:
        with os.fdopen(r, "rb") as fh:
            data = fh.read()
        _, status = os.waitpid(pid, 0)
        return data if os.waitstatus_to_exitcode(status) == 0 else None

    return result
