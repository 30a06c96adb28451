"""Prefect storage blocks as the root of a relative location template.

A block is read by its type slug and its fields, not by its class, so this module imports
no Prefect and no prefect-aws (which may not be installed):

``local-file-system``
    ``LocalFileSystem(basepath=...)``: the root is ``basepath`` (the working directory
    when unset).
``remote-file-system``
    ``RemoteFileSystem(basepath="s3://bucket/prefix", settings={...})``: the root is
    ``basepath``; ``settings`` are fsspec options (credentials, ``client_kwargs``...).
``s3-bucket`` (prefect-aws)
    ``S3Bucket(bucket_name=..., bucket_folder=..., credentials=...)``: the root is
    ``s3://bucket_name/bucket_folder``; ``AwsCredentials`` or ``MinIOCredentials`` give
    the key, secret, session token, region and endpoint.

Secrets (``SecretStr`` fields) are unwrapped only into the storage options handed to
fsspec; the root, which appears in locations, logs and errors, never holds one.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from typing import Any

SUPPORTED = ("local-file-system", "remote-file-system", "s3-bucket")


@dataclass(frozen=True)
class StorageRoot:
    """Where a block stores things and the options its filesystem needs."""

    root: str
    options: dict[str, Any] = field(default_factory=dict, repr=False)
    label: str = ""  # how to name the block in messages: its slug or type

    def join(self, template: str) -> str:
        """The location template ``template`` under this root.

        ``template`` must be relative: a block is its root, so an absolute path or a URL
        would ignore it. Braces in the root are escaped so they are not template fields.
        """
        if "://" in template or template.startswith(("/", "~")) or os.path.isabs(template):
            raise ValueError(
                f"location {template!r} is absolute, but storage={self.label} gives the root "
                f"({self.root}); make the location relative to it, e.g. 'data/{{name}}.parquet'"
            )
        root = self.root.replace("{", "{{").replace("}", "}}")
        if "://" in self.root:
            return posixpath.join(root.rstrip("/"), template) if root.rstrip("/") else template
        return os.path.join(root, template)


def block_type(block: object) -> str | None:
    """The block's type slug (``"s3-bucket"``), or None for something that is not a block."""
    get_slug = getattr(type(block), "get_block_type_slug", None)
    if not callable(get_slug):
        return None
    try:
        return str(get_slug())
    except Exception:
        return None


def storage_root(block: object, label: str = "") -> StorageRoot:
    """The root and fsspec options of a storage block instance."""
    kind = block_type(block)
    label = label or repr(kind or type(block).__name__)
    if kind == "local-file-system":
        base = getattr(block, "basepath", None) or os.getcwd()
        return StorageRoot(os.path.expanduser(str(base)), {}, label)
    if kind == "remote-file-system":
        base = str(getattr(block, "basepath", "") or "")
        settings = getattr(block, "settings", None) or {}
        return StorageRoot(base, {str(k): _reveal(v) for k, v in settings.items()}, label)
    if kind == "s3-bucket":
        bucket = str(getattr(block, "bucket_name", "") or "")
        folder = str(getattr(block, "bucket_folder", "") or "").strip("/")
        root = f"s3://{bucket}/{folder}" if folder else f"s3://{bucket}"
        return StorageRoot(root, _aws_options(getattr(block, "credentials", None)), label)
    raise TypeError(
        f"storage={label} is not a storage block prefect-ds can use as a root; use one of "
        f"the block types {', '.join(SUPPORTED)} (s3-bucket comes with prefect-aws), an "
        f"instance or a saved block's slug such as 'local-file-system/lab'"
    )


def _reveal(value: Any) -> Any:
    """A ``SecretStr``'s value (also inside dicts and lists); anything else as is."""
    if hasattr(value, "get_secret_value"):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_reveal(v) for v in value]
    return value


def _aws_options(credentials: object) -> dict[str, Any]:
    """s3fs options from prefect-aws ``AwsCredentials`` or ``MinIOCredentials``."""
    if credentials is None:
        return {}  # s3fs falls back to the usual AWS environment and files
    options: dict[str, Any] = {}
    key = getattr(credentials, "aws_access_key_id", None) or getattr(
        credentials, "minio_root_user", None)
    secret = getattr(credentials, "aws_secret_access_key", None) or getattr(
        credentials, "minio_root_password", None)
    token = getattr(credentials, "aws_session_token", None)
    if key:
        options["key"] = _reveal(key)
    if secret:
        options["secret"] = _reveal(secret)
    if token:
        options["token"] = _reveal(token)
    profile = getattr(credentials, "profile_name", None)
    if profile:
        options["profile"] = profile
    client_kwargs: dict[str, Any] = {}
    region = getattr(credentials, "region_name", None)
    if region:
        client_kwargs["region_name"] = region
    params = getattr(credentials, "aws_client_parameters", None)
    endpoint = getattr(params, "endpoint_url", None)
    if endpoint:
        options["endpoint_url"] = str(endpoint)
    verify = getattr(params, "verify", None)
    if verify is False:
        client_kwargs["verify"] = False
    if client_kwargs:
        options["client_kwargs"] = client_kwargs
    return options
