"""Versioned targets on S3 (moto's server): every file format keeps its versions under
``name.versions/``, "latest" follows commits made by another process, an uncommitted
version is never latest, and pruning removes whole versions only."""

from __future__ import annotations

import threading

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from support.s3 import s3_client

from prefect_ds import PandasResultHandler, VersionNotFoundError

SUFFIXES = {"csv": ".csv", "parquet": ".parquet", "hdf": ".h5", "feather": ".feather",
            "dataset": "/"}


def frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"n": [n] * (n + 2), "s": [f"v{n}"] * (n + 2)})


def keys(endpoint: str, bucket_url: str) -> list[str]:
    listing = s3_client(endpoint).list_objects_v2(Bucket=bucket_url.removeprefix("s3://"))
    return sorted(obj["Key"] for obj in listing.get("Contents", []))


@pytest.mark.parametrize("name", sorted(SUFFIXES))
def test_versions_on_s3(name: str, s3_server: object, s3_bucket: str) -> None:
    endpoint = s3_server.endpoint  # type: ignore[attr-defined]
    handler = PandasResultHandler(f"{s3_bucket}/runs/{{r}}/out{SUFFIXES[name]}", name,
                                  versioned=True)
    assert handler.versions(r="a") == [] and not handler.exists(r="a")
    handler.write(frame(1), r="a")
    handler.write(frame(2), r="a")
    old, new = handler.versions(r="a")
    assert_frame_equal(handler.read(r="a"), frame(2))
    assert_frame_equal(handler.read(version=old, r="a"), frame(1))
    assert handler.version_record(new, r="a")["rows"] == 4
    stored = keys(endpoint, s3_bucket)
    base = "out" + SUFFIXES[name].rstrip("/")
    assert f"runs/a/{base}.versions/{old}.json" in stored
    assert any(k.startswith(f"runs/a/{base}.versions/{new}/{base}") for k in stored)
    assert not any(k == f"runs/a/{base}" for k in stored)
    assert handler.prune(1, r="a") == [old]
    assert not [k for k in keys(endpoint, s3_bucket) if old in k]
    with pytest.raises(VersionNotFoundError):
        handler.read(version=old, r="a")
    handler.delete(r="a")
    assert not [k for k in keys(endpoint, s3_bucket) if not k.endswith("lease")], keys(
        endpoint, s3_bucket)


def test_latest_follows_other_processes_and_skips_uncommitted(
        s3_server: object, s3_bucket: str) -> None:
    location = f"{s3_bucket}/shared.parquet"
    handler = PandasResultHandler(location, versioned=True)
    handler.write(pd.DataFrame({"n": [0]}))
    assert handler.read()["n"].tolist() == [0]  # the listing is now in s3fs's cache
    # Another client (its own s3fs instance and listing cache, as in another process)
    other = PandasResultHandler(location, versioned=True,
                                storage_options={"skip_instance_cache": True})
    other.write(pd.DataFrame({"n": [7]}))
    assert handler.read()["n"].tolist() == [7]  # its commit is seen at once
    assert len(handler.versions()) == 2
    # A version whose data is stored but whose record never was (its writer died between
    # the two) is no version at all.
    from prefect_ds._storage import versions as layout

    fmt = handler.format.inner  # type: ignore[attr-defined]
    fmt.write(pd.DataFrame({"n": [99]}), layout.version_location(location, layout.new_id()))
    assert handler.read()["n"].tolist() == [7] and len(handler.versions()) == 2


def test_concurrent_writers_on_s3_commit_every_version(s3_server: object, s3_bucket: str) -> None:
    """Two writers (threads with their own uploads) of one csv target: data and sidecar
    of each version stay together, and every write is a committed version."""
    handler = PandasResultHandler(f"{s3_bucket}/both.csv", versioned=True)

    def write(who: int) -> None:
        for i in range(3):
            handler.write(pd.DataFrame({"who": [who] * 20, "i": [i] * 20}))

    writers = [threading.Thread(target=write, args=(who,)) for who in (1, 2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
    ids = handler.versions()
    assert len(ids) == 6
    for version in ids:
        df = handler.read(version=version)
        assert len(df) == 20 and df[["who", "i"]].drop_duplicates().shape[0] == 1
        assert str(df["who"].dtype) == "int64"  # the sidecar that came with its data
