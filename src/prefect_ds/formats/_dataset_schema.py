"""The Arrow schemas a dataset manifest records: written as text, read back, and the type
a partition field's hive path value parses to."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from prefect_ds._lazy import lazy

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy("pyarrow")


def encode_schema(schema: pa.Schema) -> str:
    """``schema`` as text for the JSON manifest (base64 of its IPC serialization)."""
    return base64.b64encode(schema.serialize().to_pybytes()).decode()


def decode_schema(text: str) -> pa.Schema:
    """The schema :func:`encode_schema` wrote."""
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def plain_type(field_type: pa.DataType) -> pa.DataType:
    """The type a hive path value parses to (a dictionary's value type)."""
    return field_type.value_type if pa.types.is_dictionary(field_type) else field_type
