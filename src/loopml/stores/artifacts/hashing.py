"""The one content hash of loopml: BLAKE3, parallel within big files."""

from __future__ import annotations

import os
from pathlib import Path

import blake3

HASH_NAME = "blake3"
DIGEST_HEX_LEN = 64
# Below this size thread start-up costs more than it saves.
_PARALLEL_THRESHOLD = 8 * 1024 * 1024
CHUNK_SIZE = 4 * 1024 * 1024


def new_hasher(size_hint: int = 0) -> blake3.blake3:
    threads = blake3.blake3.AUTO if size_hint >= _PARALLEL_THRESHOLD else 1
    return blake3.blake3(max_threads=threads)


def hash_bytes(data: bytes | memoryview) -> str:
    return new_hasher(len(data)).update(data).hexdigest()


def hash_file(path: str | os.PathLike[str], size: int | None = None) -> str:
    """Hash a file without reading it into memory (memory-mapped, multi-threaded when large)."""
    size = os.stat(path).st_size if size is None else size
    hasher = new_hasher(size)
    if size:
        hasher.update_mmap(os.fspath(path))
    return hasher.hexdigest()


def is_digest(value: str) -> bool:
    return len(value) == DIGEST_HEX_LEN and all(c in "0123456789abcdef" for c in value)


def object_key(digest: str) -> str:
    """Where an object lives under a store root: two-level fan-out like git."""
    return f"{digest[:2]}/{digest[2:]}"


def digest_from_key(key: str) -> str | None:
    parts = Path(key).parts
    if len(parts) != 2 or len(parts[0]) != 2:
        return None
    digest = parts[0] + parts[1]
    return digest if is_digest(digest) else None
