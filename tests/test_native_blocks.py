"""Prefect storage blocks as the root of a location: instances and saved slugs, local
files and S3 (moto's server), credentials taken from the block."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from prefect_ds import PandasResultHandler, TemplateError, checkpoint
from prefect_ds._storage.blocks import storage_root

FRAME = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
AWS_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION")


def name() -> str:
    return f"lab-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def no_aws_environment(s3_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The moto server runs, but nothing in the environment points at it: only a block's
    own settings can reach it."""
    from support.s3 import clear_fsspec_cache

    for variable in AWS_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    clear_fsspec_cache()
    yield s3_server
    clear_fsspec_cache()


def remote_block(endpoint: str, bucket: str) -> Any:
    from prefect.filesystems import RemoteFileSystem
    from support.s3 import storage_options

    return RemoteFileSystem(basepath=f"s3://{bucket}/results", settings=storage_options(endpoint))


def test_the_prefect_functions_a_slug_is_loaded_with_are_still_there() -> None:
    """A slug is loaded with ``Block.aload`` run through ``run_coro_as_sync`` (which works
    inside a running event loop); both are Prefect utilities, not documented API."""
    import inspect

    from prefect.blocks.core import Block
    from prefect.utilities.asyncutils import run_coro_as_sync

    assert inspect.iscoroutinefunction(Block.aload)
    assert callable(run_coro_as_sync)
    assert Block.get_block_type_slug.__func__  # type: ignore[attr-defined]


# -- instances ----------------------------------------------------------------------------


def test_local_file_system_instance_is_the_root(tmp_path: Path) -> None:
    from prefect.filesystems import LocalFileSystem

    block = LocalFileSystem(basepath=str(tmp_path / "root"))
    handler = PandasResultHandler("data/{n}.parquet", storage=block)
    assert handler.location == str(tmp_path / "root" / "data" / "{n}.parquet")
    written = handler.write(FRAME, n=1)
    assert written == str(tmp_path / "root" / "data" / "1.parquet")
    assert_frame_equal(pd.read_parquet(written), FRAME)

    calls = []

    @checkpoint("c_{n}.csv", storage=block)
    def build(n: int) -> pd.DataFrame:
        calls.append(n)
        return FRAME

    assert_frame_equal(build(2), FRAME)
    assert_frame_equal(build(2), FRAME)
    assert calls == [2]
    assert (tmp_path / "root" / "c_2.csv").exists()


def test_a_root_with_braces_is_not_a_template_field(tmp_path: Path) -> None:
    from prefect.filesystems import LocalFileSystem

    block = LocalFileSystem(basepath=str(tmp_path / "odd{dir}"))
    handler = PandasResultHandler("{n}.parquet", storage=block)
    assert handler.template.fields == {"n"}
    assert handler.write(FRAME, n=1) == str(tmp_path / "odd{dir}" / "1.parquet")


def test_remote_file_system_on_s3_takes_credentials_from_the_block(
    no_aws_environment: Any,
) -> None:
    from support.s3 import create_bucket, s3_client

    endpoint = no_aws_environment.endpoint
    bucket = create_bucket(endpoint)
    block = remote_block(endpoint, bucket)
    handler = PandasResultHandler("features/{region}.parquet", storage=block)
    assert handler.location == f"s3://{bucket}/results/features/{{region}}.parquet"
    handler.write(FRAME, region="east")
    keys = [o["Key"] for o in s3_client(endpoint).list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["results/features/east.parquet"]
    assert handler.exists(region="east")
    assert_frame_equal(handler.read(region="east"), FRAME)
    # the secret is in the storage options only, never in the location or the repr
    secret = block.settings["secret"]
    assert secret not in handler.location and secret not in repr(handler)
    assert secret not in repr(storage_root(block))


def test_without_the_block_the_same_location_cannot_reach_the_server(
    no_aws_environment: Any,
) -> None:
    """The control for the test above: it passes because of the block's settings."""
    from support.s3 import create_bucket

    bucket = create_bucket(no_aws_environment.endpoint)
    handler = PandasResultHandler(f"s3://{bucket}/results/x.parquet")
    with pytest.raises(Exception):  # noqa: B017 - any failure to reach it will do
        handler.write(FRAME)


def test_absolute_location_with_a_block_is_refused(tmp_path: Path) -> None:
    from prefect.filesystems import LocalFileSystem

    block = LocalFileSystem(basepath=str(tmp_path))
    for location in (str(tmp_path / "x.csv"), "s3://bucket/x.csv", "~/x.csv"):
        with pytest.raises(TemplateError, match="relative"):
            PandasResultHandler(location, storage=block)


def test_unsupported_storage_is_refused_naming_the_supported_blocks() -> None:
    from prefect.blocks.system import Secret

    with pytest.raises(TypeError, match="local-file-system, remote-file-system, s3-bucket"):
        PandasResultHandler("x.csv", storage=Secret(value="nope"))
    with pytest.raises(TypeError, match="local-file-system"):
        PandasResultHandler("x.csv", storage=object())
    with pytest.raises(ValueError, match="block-type/name"):
        PandasResultHandler("x.csv", storage="lab")


def test_prefect_aws_s3_bucket(no_aws_environment: Any) -> None:
    """prefect-aws's S3Bucket, when it is installed (it is not a dependency)."""
    prefect_aws = pytest.importorskip(
        "prefect_aws", reason="opt-in: prefect-aws is not a dependency; install it to test")
    from support.s3 import ACCESS_KEY, REGION, SECRET_KEY, create_bucket

    endpoint = no_aws_environment.endpoint
    bucket = create_bucket(endpoint)
    credentials = prefect_aws.AwsCredentials(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION,
        aws_client_parameters={"endpoint_url": endpoint})
    block = prefect_aws.S3Bucket(bucket_name=bucket, bucket_folder="lab",
                                 credentials=credentials)
    handler = PandasResultHandler("{n}.parquet", storage=block)
    assert handler.location == f"s3://{bucket}/lab/{{n}}.parquet"
    handler.write(FRAME, n=1)
    assert_frame_equal(handler.read(n=1), FRAME)


# -- saved blocks, by slug, from a real Prefect server -------------------------------------


def test_saved_blocks_by_slug(prefect_harness: None, no_aws_environment: Any,
                              tmp_path: Path) -> None:
    from prefect import flow, task
    from prefect.filesystems import LocalFileSystem
    from support.s3 import create_bucket

    local, remote = name(), name()
    LocalFileSystem(basepath=str(tmp_path / "lab")).save(local)
    bucket = create_bucket(no_aws_environment.endpoint)
    remote_block(no_aws_environment.endpoint, bucket).save(remote)

    on_disk = PandasResultHandler("{n}.csv", storage=f"local-file-system/{local}")
    assert on_disk.write(FRAME, n=1) == str(tmp_path / "lab" / "1.csv")

    calls = []

    @task(persist_result=False)
    @checkpoint("runs/{n}.parquet", storage=f"remote-file-system/{remote}")
    def build(n: int) -> pd.DataFrame:
        calls.append(n)
        return FRAME

    @flow
    def pipeline() -> list[str]:
        return [build(n, return_state=True).name for n in (1, 2)]

    assert pipeline() == ["Completed", "Completed"]
    assert pipeline() == ["Cached", "Cached"]
    assert calls == [1, 2]
    reader = PandasResultHandler("runs/{n}.parquet", storage=f"remote-file-system/{remote}")
    assert_frame_equal(reader.read(n=2), FRAME)

    with pytest.raises(ValueError, match="no such saved block"):
        PandasResultHandler("x.csv", storage=f"local-file-system/{name()}")


def test_a_slug_loads_inside_a_running_event_loop(prefect_harness: None,
                                                 tmp_path: Path) -> None:
    """As in a notebook: the handler is built while an event loop runs."""
    import asyncio

    from prefect.filesystems import LocalFileSystem

    slug = name()
    LocalFileSystem(basepath=str(tmp_path)).save(slug)

    async def in_loop() -> PandasResultHandler:
        return PandasResultHandler("{n}.csv", storage=f"local-file-system/{slug}")

    handler = asyncio.run(in_loop())
    assert handler.location == str(tmp_path / "{n}.csv")
