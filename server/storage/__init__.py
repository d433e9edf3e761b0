"""Where attachment files live: an interface (base.Storage) with two engines, a directory
under DATA_DIR served by this server through signed URLs (directory.py), and S3-compatible
object storage with presigned URLs (s3.py), chosen once from STORAGE_URL (`create_storage`)."""

from __future__ import annotations

from server.settings import Settings
from server.storage.base import Storage


def create_storage(settings: Settings) -> Storage:
    """The engine STORAGE_URL names: unset, the directory DATA_DIR/attachments."""
    url = settings.storage_url
    if url is not None and url.startswith("s3://"):
        from server.storage.s3 import S3Storage

        return S3Storage(settings)
    from server.storage.directory import DirectoryStorage

    return DirectoryStorage(settings)


__all__ = ["Storage", "create_storage"]
