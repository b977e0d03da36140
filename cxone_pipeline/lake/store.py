"""The lake store: one small interface, a local-folder and an S3 implementation.

Both are synchronous; the landing calls them from a worker thread.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from cxone_pipeline.settings import Settings


class StoreError(Exception):
    """The store could not complete an operation (I/O error, S3 error, timeout)."""


class ObjectNotFound(StoreError, KeyError):
    """No object at that key."""

    def __str__(self) -> str:
        return f"no object at {self.args[0]!r}"


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


class Store(Protocol):
    url: str

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix` (and sorts after `start_after`), in key
        order, fetched page by page."""
        ...

    def delete(self, key: str) -> None: ...


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StoreError(f"refusing unsafe lake key {key[:120]!r}")
    return key


def folder_mode(file_mode: int) -> int:
    """The folder mode that matches a file mode: search (x) wherever read (r) is allowed."""
    return file_mode | ((file_mode & 0o444) >> 2)


class LocalStore:
    """A folder on a local disk. Writes are atomic and durable: temp file, fsync, rename.
    Files it creates get `file_mode` (default 0600: staged events are personal data) and
    folders the matching mode (0700), whatever the umask."""

    def __init__(self, root: str | Path, file_mode: int = 0o600) -> None:
        self.root = Path(root).resolve()
        self.url = self.root.as_uri()
        self.file_mode = file_mode
        self.folder_mode = folder_mode(file_mode)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            self._make_dirs(path.parent)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.file_mode)
            try:
                os.fchmod(fd, self.file_mode)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StoreError(f"cannot write {key!r} under {self.root}: {exc.strerror}") from exc

    def _make_dirs(self, folder: Path) -> None:
        """mkdir -p, then fsync the parent of every folder created, so a new hour folder
        survives a power loss as surely as the object written into it."""
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for created in reversed(missing):
            created.mkdir(self.folder_mode, exist_ok=True)
            created.chmod(self.folder_mode)
            _fsync_dir(created.parent)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise StoreError(f"cannot read {key!r} under {self.root}: {exc.strerror}") from exc

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]:
        # Walk only the deepest folder the prefix names, as S3 would only scan that range.
        folder, _, _ = prefix.rpartition("/")
        start = self.root / folder if folder else self.root
        if folder and any(p in ("", ".", "..") for p in folder.split("/")):
            raise StoreError(f"refusing unsafe lake prefix {prefix[:120]!r}")
        for info in self._walk(start, prefix):
            if start_after is None or info.key > start_after:
                yield info

    def _walk(self, folder: Path, prefix: str) -> Iterator[ObjectInfo]:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise StoreError(f"cannot list {folder}: {exc.strerror}") from exc
        for entry in entries:
            if entry.name.startswith("."):
                continue
            key = Path(entry.path).relative_to(self.root).as_posix()
            if entry.is_dir(follow_symlinks=False):
                if key.startswith(prefix) or prefix.startswith(key + "/"):
                    yield from self._walk(Path(entry.path), prefix)
            elif key.startswith(prefix):
                yield ObjectInfo(key, entry.stat().st_size)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(f"cannot delete {key!r} under {self.root}: {exc.strerror}") from exc


class S3Store:
    """A bucket (and optional key prefix) on S3 or any S3-compatible server."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        server_side_encryption: str | None = None,
        kms_key_id: str | None = None,
        page_size: int = 1000,
    ) -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}"
        self._page_size = page_size
        self._put_extra: dict[str, str] = {}
        if server_side_encryption:
            self._put_extra["ServerSideEncryption"] = server_side_encryption
        if kms_key_id:
            self._put_extra["SSEKMSKeyId"] = kms_key_id

    def __repr__(self) -> str:
        return f"S3Store({self.url!r})"

    def _call(self, action: str, key: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._client, action)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ObjectNotFound(key) from None
            raise StoreError(f"S3 {action} {self.url}{key} failed: {code or exc}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"S3 {action} {self.url}{key} failed: {exc}") from exc

    def put(self, key: str, data: bytes) -> None:
        full = self.prefix + _check_key(key)
        self._call("put_object", key, Key=full, Body=data, **self._put_extra)

    def get(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError

        response = self._call("get_object", key, Key=self.prefix + _check_key(key))
        try:
            return response["Body"].read()
        except BotoCoreError as exc:
            raise StoreError(f"S3 get_object {self.url}{key} failed while reading: {exc}") from exc

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]:
        kwargs: dict[str, Any] = {"Prefix": self.prefix + prefix, "MaxKeys": self._page_size}
        if start_after is not None:
            kwargs["StartAfter"] = self.prefix + start_after
        while True:
            page = self._call("list_objects_v2", prefix, **kwargs)
            for item in page.get("Contents", []):
                yield ObjectInfo(item["Key"][len(self.prefix) :], int(item["Size"]))
            if not page.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def delete(self, key: str) -> None:
        self._call("delete_object", key, Key=self.prefix + _check_key(key))


def s3_client(endpoint_url: str | None, max_pool_connections: int = 32) -> Any:
    """A boto3 S3 client with short timeouts: callers own the retry deadline."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=2,
        read_timeout=10,
        retries={"max_attempts": 2, "mode": "standard"},
        max_pool_connections=max_pool_connections,
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)


def open_store(settings: Settings, client: Any = None) -> Store:
    """The store named by `CXONE_PIPELINE_LAKE_URL`: a path, `file://` URL or `s3://bucket/prefix`."""
    url = settings.lake_url
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StoreError(f"lake URL {url!r} names no bucket: use s3://bucket/prefix")
        return S3Store(
            client if client is not None else s3_client(settings.s3_endpoint_url),
            parsed.netloc,
            parsed.path,
            settings.s3_server_side_encryption,
            settings.s3_kms_key_id,
        )
    if parsed.scheme == "file":
        return LocalStore(parsed.path, settings.local_file_mode)
    if parsed.scheme in ("", None) or len(parsed.scheme) == 1:  # a plain or Windows path
        return LocalStore(url, settings.local_file_mode)
    raise StoreError(f"unsupported lake URL {url!r}: use a path, file:///abs/path or s3://bucket")
