from __future__ import annotations

import os
from pathlib import Path

import pytest

from cxone_pipeline.lake.store import (
    LocalStore,
    ObjectInfo,
    ObjectNotFound,
    S3Store,
    StoreError,
    open_store,
    s3_client,
)
from cxone_pipeline.settings import Settings


def test_put_get_list_delete(store: LocalStore | S3Store) -> None:
    store.put("staging/call_event/year=2026/month=11/day=27/hour=19/a.jsonl.gz", b"one")
    store.put("staging/call_event/year=2026/month=11/day=27/hour=20/b.jsonl.gz", b"two!")
    store.put("curated/call_event/year=2026/month=11/day=27/hour=19/part-00000.parquet", b"3")

    assert store.get("staging/call_event/year=2026/month=11/day=27/hour=20/b.jsonl.gz") == b"two!"
    assert list(store.list("staging/call_event/year=2026/month=11/day=27/hour=19/")) == [
        ObjectInfo("staging/call_event/year=2026/month=11/day=27/hour=19/a.jsonl.gz", 3)
    ]
    assert [o.key for o in store.list("staging/")] == [
        "staging/call_event/year=2026/month=11/day=27/hour=19/a.jsonl.gz",
        "staging/call_event/year=2026/month=11/day=27/hour=20/b.jsonl.gz",
    ]
    assert [o.key for o in store.list("staging/call_event/year=2026/month=11/day=27/hour=2")] == [
        "staging/call_event/year=2026/month=11/day=27/hour=20/b.jsonl.gz"
    ]
    assert list(store.list("quarantine/")) == []

    store.delete("staging/call_event/year=2026/month=11/day=27/hour=19/a.jsonl.gz")
    with pytest.raises(ObjectNotFound):
        store.get("staging/call_event/year=2026/month=11/day=27/hour=19/a.jsonl.gz")
    store.delete("staging/never/written")  # deleting a missing key is not an error


def test_list_paginates(store: LocalStore | S3Store) -> None:
    if isinstance(store, S3Store):
        store = S3Store(store._client, store.bucket, store.prefix, page_size=7)
    keys = [f"staging/s/year=2026/month=01/day=01/hour=00/{i:04d}.jsonl" for i in range(25)]
    for key in keys:
        store.put(key, b"x")
    assert [o.key for o in store.list("staging/s/")] == keys


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "./a", "a/."])
def test_unsafe_keys_are_refused(store: LocalStore | S3Store, key: str) -> None:
    with pytest.raises(StoreError, match="unsafe"):
        store.put(key, b"x")


def test_local_put_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("a/b.bin", b"1" * 1000)
    store.put("a/b.bin", b"2")
    assert os.listdir(tmp_path / "a") == ["b.bin"]
    assert store.get("a/b.bin") == b"2"


def test_local_write_failure_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"a file where a folder should be")
    with pytest.raises(StoreError, match="cannot write 'a/b'"):
        LocalStore(tmp_path).put("a/b", b"x")


def test_s3_server_side_encryption_is_sent(s3_endpoint: str, s3_bucket: str) -> None:
    client = s3_client(s3_endpoint)
    S3Store(client, s3_bucket, "", server_side_encryption="AES256").put("k", b"v")
    head = client.head_object(Bucket=s3_bucket, Key="k")
    assert head["ServerSideEncryption"] == "AES256"


def test_s3_errors_are_store_errors(s3_endpoint: str) -> None:
    store = S3Store(s3_client(s3_endpoint), "no-such-bucket")
    with pytest.raises(StoreError, match="NoSuchBucket"):
        store.put("k", b"v")


def test_open_store_from_lake_url(tmp_path: Path, s3_endpoint: str) -> None:
    local = open_store(Settings(lake_url=str(tmp_path)))
    assert isinstance(local, LocalStore) and local.root == tmp_path.resolve()
    assert isinstance(open_store(Settings(lake_url=tmp_path.as_uri())), LocalStore)
    s3 = open_store(Settings(lake_url="s3://bucket/some/prefix", s3_endpoint_url=s3_endpoint))
    assert isinstance(s3, S3Store) and s3.url == "s3://bucket/some/prefix/"
    with pytest.raises(StoreError, match="unsupported lake URL"):
        open_store(Settings(lake_url="gs://bucket"))


@pytest.mark.parametrize(("mode", "folders"), [(None, 0o700), ("0640", 0o750)])
def test_local_lake_is_private_by_default(tmp_path: Path, mode: str | None, folders: int) -> None:
    """Staged events hold personal data (transcripts): files 0600 and folders 0700 unless
    CXONE_PIPELINE_LOCAL_FILE_MODE says otherwise, whatever the umask."""
    env = {"CXONE_PIPELINE_LAKE_URL": str(tmp_path / "lake")}
    if mode:
        env["CXONE_PIPELINE_LOCAL_FILE_MODE"] = mode
    store = open_store(Settings.from_env(env))
    previous = os.umask(0o022)
    try:
        store.put("staging/call_event/year=2026/month=11/day=27/hour=19/a.jsonl.gz", b"pii")
    finally:
        os.umask(previous)
    files = int(mode, 8) if mode else 0o600
    created = [tmp_path / "lake", *(tmp_path / "lake").rglob("*")]
    assert {p.stat().st_mode & 0o777 for p in created if p.is_file()} == {files}
    assert {p.stat().st_mode & 0o777 for p in created if p.is_dir()} == {folders}
