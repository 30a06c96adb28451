"""Passwords never reach an error message, whatever part of the stack wrote the message.

libpq quotes the whole connection URI, password included, in some of its errors (an
empty IPv6 host ``[]`` is one); the ADBC path must scrub it before the message leaves
prefect-ds. ``redact`` does the same for the registry's and the CLI's messages. Neither
check needs a running server.
"""

from __future__ import annotations

import pandas as pd
import pytest

from prefect_ds import get_format
from prefect_ds._redact import redact
from prefect_ds._registry import resolve_format

SECRET = "s3cr3t-Pa55"
QUOTING = f"postgresql://u:{SECRET}@[]/db#t"  # libpq repeats this URI in its error


def calls() -> dict[str, object]:
    fmt = get_format("sql")
    return {
        "read": lambda: fmt.read(QUOTING, engine="adbc"),
        "write": lambda: fmt.write(pd.DataFrame({"a": [1]}), QUOTING, engine="adbc"),
        "exists": lambda: fmt.exists(QUOTING),
        "read_metadata": lambda: fmt.read_metadata(QUOTING),  # type: ignore[attr-defined]
    }


@pytest.mark.parametrize("call", ["read", "write", "exists", "read_metadata"])
def test_driver_error_quoting_the_uri_is_scrubbed(call: str) -> None:
    with pytest.raises(ConnectionError) as err:
        calls()[call]()  # type: ignore[operator]
    message = str(err.value)
    assert "IPv6 host address may not be empty" in message  # the driver's own words ...
    assert SECRET not in message and "u:***@" in message  # ... minus the password
    assert SECRET not in repr(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__


@pytest.mark.parametrize(("location", "shown"), [
    (f"postgresql://u:{SECRET}@h/db#t", "postgresql://u:***@h/db#t"),
    (f"postgresql+psycopg://u:{SECRET}@h:5432/db#s.t", "postgresql+psycopg://u:***@h:5432/db#s.t"),
    (f"s3://key:{SECRET}@bucket/x.csv", "s3://key:***@bucket/x.csv"),
    (f"mysql://:{SECRET}@h/db#t", "mysql://:***@h/db#t"),
    ("postgresql://u@h/db#t", "postgresql://u@h/db#t"),
    ("data/a:b@c.csv", "data/a:b@c.csv"),
    (f"postgresql://u:{SECRET}@h/db?x=a@b#t", "postgresql://u:***@b#t"),
])
def test_redact(location: str, shown: str) -> None:
    assert redact(location) == shown


def test_unknown_location_error_redacts(tmp_path: object) -> None:
    with pytest.raises(Exception) as err:
        resolve_format(f"weird://u:{SECRET}@h/x.unknownsuffix")
    assert SECRET not in str(err.value) and "***" in str(err.value)
