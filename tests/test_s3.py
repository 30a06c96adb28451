"""``s3://`` targets against a real S3 HTTP endpoint (moto's server on 127.0.0.1).

Every installed file format round-trips through ``PandasResultHandler``; credentials and
the endpoint come from the AWS environment variables or from ``storage_options``; an
upload that fails midway leaves no object, or the previous one, never a partial one.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from support.s3 import CuttingProxy, aws_env, clear_fsspec_cache, s3_client, storage_options

from prefect_ds import PandasResultHandler, available_formats, get_format

FILE_FORMATS = ["parquet", "csv", "hdf", "feather"]


def installed(name: str) -> str:
    if name not in available_formats():
        pytest.skip(f"format {name!r} is not installed yet")
    return name


def suffix(name: str) -> str:
    return get_format(name).suffixes[0]


def frame(n: int = 50, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype="int64"),
            "value": rng.normal(size=n),
            "label": [f"item-{i}" for i in range(n)],
        }
    )


def keys(endpoint: str, bucket_url: str) -> list[str]:
    bucket = bucket_url.removeprefix("s3://")
    listing = s3_client(endpoint).list_objects_v2(Bucket=bucket)
    return sorted(obj["Key"] for obj in listing.get("Contents", []))


@pytest.mark.parametrize("name", FILE_FORMATS)
def test_round_trip_exists_delete(name: str, s3_server: object, s3_bucket: str) -> None:
    installed(name)
    endpoint = s3_server.endpoint  # type: ignore[attr-defined]
    handler = PandasResultHandler(f"{s3_bucket}/runs/{{region}}/data{suffix(name)}")
    df = frame()

    assert not handler.exists(region="north")
    location = handler.write(df, region="north")
    assert location == f"{s3_bucket}/runs/north/data{suffix(name)}"
    assert handler.exists(region="north")
    assert not handler.exists(region="south")
    pd.testing.assert_frame_equal(handler.read(region="north"), df)

    stored = keys(endpoint, s3_bucket)
    assert f"runs/north/data{suffix(name)}" in stored
    assert not [k for k in stored if "prefect-ds-tmp" in k], stored  # staged locally, one PUT

    handler.delete(region="north")
    assert not handler.exists(region="north")
    assert keys(endpoint, s3_bucket) == []  # sidecars go with the data file
    handler.delete(region="north")  # deleting nothing is fine


@pytest.mark.parametrize("name", FILE_FORMATS)
def test_storage_options_instead_of_environment(
    name: str, s3_server: object, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed(name)
    endpoint = s3_server.endpoint  # type: ignore[attr-defined]
    for variable in aws_env(endpoint):
        monkeypatch.delenv(variable, raising=False)
    clear_fsspec_cache()
    try:
        handler = PandasResultHandler(
            f"{s3_bucket}/{{id}}{suffix(name)}", storage_options=storage_options(endpoint)
        )
        df = frame(seed=1)
        handler.write(df, id=7)
        assert handler.exists(id=7)
        pd.testing.assert_frame_equal(handler.read(id=7), df)
        handler.delete(id=7)
        assert not handler.exists(id=7)
        # The registered format is shared: the options went on a copy only.
        assert get_format(name).storage_options == {}  # type: ignore[attr-defined]
    finally:
        clear_fsspec_cache()


def test_storage_options_rejected_for_non_file_format() -> None:
    if "sql" not in available_formats():
        pytest.skip("the sql format is not installed yet")
    with pytest.raises(TypeError, match="storage_options apply to file formats only"):
        PandasResultHandler("sqlite:///x.db#t", storage_options={"anon": True})


@pytest.mark.parametrize("name", FILE_FORMATS)
def test_write_failing_before_upload_leaves_previous(
    name: str, s3_server: object, s3_bucket: str
) -> None:
    installed(name)
    handler = PandasResultHandler(f"{s3_bucket}/t{suffix(name)}")
    before = frame(seed=2)
    handler.write(before)
    stored = keys(s3_server.endpoint, s3_bucket)  # type: ignore[attr-defined]

    class Unwritable:
        def __reduce__(self) -> object:
            raise RuntimeError("cannot serialise")

        def __str__(self) -> str:
            raise RuntimeError("cannot serialise")

        __repr__ = __str__

    bad = pd.DataFrame({"id": [1, 2], "obj": [Unwritable(), Unwritable()]})
    with pytest.raises(Exception):  # noqa: B017 - each format fails in its own way
        handler.write(bad)
    assert keys(s3_server.endpoint, s3_bucket) == stored  # type: ignore[attr-defined]
    pd.testing.assert_frame_equal(handler.read(), before)


@pytest.mark.parametrize("previous", [False, True], ids=["absent", "overwrite"])
def test_upload_cut_midway_leaves_no_partial_object(
    previous: bool, s3_server: object, s3_bucket: str
) -> None:
    """A real connection drop in the middle of the PUT: the object stays as it was."""
    endpoint = s3_server.endpoint  # type: ignore[attr-defined]
    location = f"{s3_bucket}/big.parquet"
    direct = PandasResultHandler(location)
    before = frame(seed=3)
    if previous:
        direct.write(before)
    large = pd.DataFrame({"x": np.random.default_rng(4).normal(size=400_000)})  # ~3 MB
    port = int(endpoint.rsplit(":", 1)[1])
    with CuttingProxy(port, cut_after=256 * 1024) as proxy:
        options = {
            **storage_options(proxy.endpoint),
            "config_kwargs": {"retries": {"max_attempts": 1, "mode": "standard"}},
        }
        clear_fsspec_cache()
        try:
            through_proxy = PandasResultHandler(location, storage_options=options)
            with pytest.raises(Exception):  # noqa: B017 - botocore/aiohttp connection errors
                through_proxy.write(large)
        finally:
            clear_fsspec_cache()
        assert proxy.cuts >= 1  # the upload really was cut, not refused up front
    if previous:
        assert keys(endpoint, s3_bucket) == ["big.parquet"]
        pd.testing.assert_frame_equal(direct.read(), before)
    else:
        assert keys(endpoint, s3_bucket) == []
        assert not direct.exists()


def test_environment_reaches_subprocesses(s3_server: object) -> None:
    """The fixture exports the standard variables, so spawned workers find the server."""
    assert os.environ["AWS_ENDPOINT_URL"] == s3_server.endpoint  # type: ignore[attr-defined]
