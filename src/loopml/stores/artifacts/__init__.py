"""The artifact store: a content-addressed layer over byte backends (local disk, any fsspec URL)."""

from loopml.stores.artifacts.backends import ByteBackend, FsspecBackend, LocalBackend, open_backend
from loopml.stores.artifacts.cas import ContentStore, ObjectCheck, ObjectRef, open_content_store
from loopml.stores.artifacts.hashing import HASH_NAME, hash_bytes, hash_file

__all__ = [
    "HASH_NAME",
    "ByteBackend",
    "ContentStore",
    "FsspecBackend",
    "LocalBackend",
    "ObjectCheck",
    "ObjectRef",
    "hash_bytes",
    "hash_file",
    "open_backend",
    "open_content_store",
]
