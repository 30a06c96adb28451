"""CSV that reads back exactly: pyarrow's fast writer plus a JSON schema sidecar.

``data.csv`` stays a plain, readable CSV any tool can open. Beside it,
``data.csv.schema.json`` records what a CSV cannot: every column's exact pandas dtype
(nullable ints and booleans, datetimes with their unit and time zone, categoricals with
their categories and order, pandas' string dtypes), the index, the column order, the row
count and the data file's size in bytes. Reading parses the CSV with pyarrow using the
recorded column types (nothing is inferred) and restores the dtypes, so
``read(write(df)) == df``. A size or row count that disagrees with the sidecar raises
:class:`~prefect_ds.CorruptTargetError` instead of returning a wrong frame.

The sidecar is bound to the exact data file it describes (``binding``: the file's sha256,
plus its inode, ``mtime_ns`` and size locally, taken from the staged file before the
commit) and sealed with a digest of its own content (``check``), and the two files are
committed in one step (``prefect_ds._storage.files.staged``). A reader compares the
binding with the file it opened; a mismatch is waited out while a writer holds the
target's lock (between its two renames), else it is a ``CorruptTargetError``: the data of
one version is never parsed with another version's sidecar.

Missing values: a null is an empty, unquoted field; an empty string is ``""``. Every
string value is quoted, so the two never mix. Tz-aware datetimes are written in UTC
(``...Z``). Timedeltas, and datetimes outside what pyarrow's parser reads (years 1..9999),
are written as integer counts of their unit. docs/fidelity.md has the details.

A CSV with no sidecar (written by someone else) is read exactly as
``pandas.read_csv(path, **read_kwargs)`` reads it.

Arrow tables (and polars frames, which reach the format as Arrow) are written and read
without pandas: the sidecar records their exact Arrow schema (``_csv_arrow``), and
``read(location, kind="arrow")`` parses the file with those types.

``write(df, location, metadata={...})`` keeps a small ``{str: str}`` mapping in the
sidecar, committed with the data; ``read_metadata`` and ``target_info`` (row count,
bytes, modification time) answer from the sidecar without parsing the CSV.

Options, merged over the class-level ``default_read_kwargs`` / ``default_write_kwargs``:

* write: ``sep`` (one character), ``header`` (bool) and ``index`` (bool; ``False`` drops
  the index) go to pyarrow's writer. Any other option, or a value pyarrow cannot honour,
  writes with ``DataFrame.to_csv(**options)`` instead (kedro-style ``index=False``
  unless given). Such a file still gets a sidecar with its size, but no dtypes: it reads
  back with ``pandas.read_csv(**read_kwargs)``.
* read: ``sep`` / ``delimiter`` / ``header`` that agree with the sidecar keep the exact
  path, and so does ``columns=[...]`` (column labels: those columns, with the index).
  Any other option means "parse this with pandas": the file is read with
  ``pandas.read_csv(**read_kwargs)`` (after the size check) and dtypes are not restored.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
from collections.abc import Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any, ClassVar

from prefect_ds._errors import CorruptTargetError
from prefect_ds._format import FileFormat, TargetInfo
from prefect_ds._lazy import lazy
from prefect_ds._redact import redact
from prefect_ds._storage import binding
from prefect_ds._storage.arrow import arrow_to_frame, frame_to_arrow
from prefect_ds._storage.files import filesystem, is_local, modified_time, open_for_read, staged
from prefect_ds._storage.locks import is_locked
from prefect_ds.formats import _csv_arrow
from prefect_ds.formats._csv_codec import column_types, decode, encode, select
from prefect_ds.hookspecs import Register, hookimpl

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pcsv
else:
    pd = lazy("pandas")
    pa = lazy("pyarrow")
    pcsv = lazy("pyarrow.csv")

SIDECAR_SUFFIX = ".schema.json"
SCHEMA_VERSION = 1
_WRITE_ARROW_KEYS = frozenset({"sep", "header", "index"})
_READ_ARROW_KEYS = frozenset({"sep", "delimiter", "header", "columns"})
_FORBIDDEN_DELIMITERS = frozenset({'"', "\n", "\r"})
SETTLE_SECONDS = 2.0  # how long a reader waits out a writer between its two renames


class CsvFormat(FileFormat):
    """A readable CSV file plus a ``.schema.json`` sidecar that makes it exact."""

    name = "csv"
    suffixes = (".csv",)
    kinds = ("pandas", "arrow")
    default_read_kwargs: ClassVar[dict[str, Any]] = {}
    default_write_kwargs: ClassVar[dict[str, Any]] = {}

    def sidecars(self, location: str) -> list[str]:
        return [location + SIDECAR_SUFFIX]

    # ---- write

    def write(self, df: pd.DataFrame | pa.Table, location: str, *,
              metadata: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        """Write ``df`` (pandas or Arrow); ``metadata`` (``{str: str}``) goes into the
        sidecar with it."""
        options = self.write_options(kwargs)
        extra = {"metadata": {str(k): str(v) for k, v in metadata.items()}} if metadata else {}
        if isinstance(df, pa.Table):
            self._write_arrow(df, location, options, extra)
            return
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"the csv format writes pandas DataFrames, not {type(df).__name__}")
        if _arrow_can_write(options):
            self._write_exact(df, location, options, extra)
        else:
            self._write_pandas(df, location, options, extra)

    def _write_exact(self, df: pd.DataFrame, location: str, options: Mapping[str, Any],
                     extra: Mapping[str, Any]) -> None:
        sep = options.get("sep", ",")
        header = bool(options.get("header", True))
        table, record = encode(df, keep_index=bool(options.get("index", True)))
        doc: dict[str, Any] = {
            "prefect_ds_csv": SCHEMA_VERSION,
            "mode": "exact",
            "delimiter": sep,
            "header": header,
            **record,
            **extra,
        }
        self._commit(table, doc, location)

    def _write_arrow(self, table: pa.Table, location: str, options: Mapping[str, Any],
                     extra: Mapping[str, Any]) -> None:
        """An Arrow table, with its exact schema in the sidecar (``_csv_arrow``)."""
        options = {k: v for k, v in options.items() if k != "index"}  # no index in Arrow
        if not _arrow_can_write(options):
            raise TypeError(
                f"the csv format writes Arrow and polars frames with the options sep and "
                f"header only, not {sorted(set(options) - {'sep', 'header'})}")
        sep = options.get("sep", ",")
        header = bool(options.get("header", True))
        written, record = _csv_arrow.encode(table)  # refuses before any file is touched
        doc: dict[str, Any] = {"prefect_ds_csv": SCHEMA_VERSION, "delimiter": sep,
                               "header": header, **record, **extra}
        self._commit(written if written.num_columns else None, doc, location)

    def _commit(self, table: pa.Table | None, doc: dict[str, Any], location: str) -> None:
        """Write ``table`` (None: an empty data file) and its sidecar ``doc`` in one commit."""
        write_options = pcsv.WriteOptions(include_header=doc["header"],
                                          delimiter=doc["delimiter"])
        sidecar = self.sidecars(location)[0]
        with staged(sidecar, location, **self.storage_options) as (sidecar_temp, data_temp):
            if table is not None:
                pcsv.write_csv(table, data_temp, write_options=write_options)
            else:
                open(data_temp, "wb").close()
            doc["bytes"] = os.path.getsize(data_temp)
            self._dump_sidecar(doc, sidecar_temp, data_temp, location)

    def _write_pandas(self, df: pd.DataFrame, location: str, options: Mapping[str, Any],
                      extra: Mapping[str, Any]) -> None:
        options = {"index": False, **options}
        sidecar = self.sidecars(location)[0]
        with staged(sidecar, location, **self.storage_options) as (sidecar_temp, data_temp):
            df.to_csv(data_temp, **options)
            doc = {
                "prefect_ds_csv": SCHEMA_VERSION,
                "mode": "pandas",
                "rows": len(df),
                "bytes": os.path.getsize(data_temp),
                "write_kwargs": {k: repr(v) for k, v in options.items()},
                **extra,
            }
            self._dump_sidecar(doc, sidecar_temp, data_temp, location)

    def _dump_sidecar(self, doc: dict[str, Any], sidecar_temp: str, data_temp: str,
                      location: str) -> None:
        """Write the sidecar, bound to the staged data file and sealed (module doc)."""
        fs, _ = filesystem(location, **self.storage_options)
        doc["binding"] = binding.of_file(data_temp, local=is_local(fs))
        with open(sidecar_temp, "w", encoding="utf-8") as handle:
            json.dump(binding.seal(doc), handle, ensure_ascii=False, indent=1)

    # ---- read

    def read(self, location: str, *, kind: str = "pandas", **kwargs: Any) -> Any:
        """The stored frame as ``kind``: ``"pandas"`` or ``"arrow"`` (module doc)."""
        options = self.read_options(kwargs)
        doc = self._load_sidecar(location)
        if kind == "arrow":
            if doc is None and not options:
                with open_for_read(location, **self.storage_options) as source:
                    return pcsv.read_csv(source)  # a foreign CSV, types inferred by pyarrow
            if doc is None or doc.get("mode") != "arrow":
                return frame_to_arrow(self.read(location, **kwargs), self.name)
        if doc is None:
            with open_for_read(location, **self.storage_options) as source:
                foreign: pd.DataFrame = pd.read_csv(source, **options)
            return foreign
        with self._bound_data(location, doc) as (doc, stream):
            size = stream.size() if isinstance(stream, pa.NativeFile) else _size(stream)
            if size != doc["bytes"]:
                raise CorruptTargetError(
                    f"{redact(location)}: the data file is {size} bytes but its schema sidecar "
                    f"{self.sidecars(location)[0]} records {doc['bytes']}; the file was "
                    f"changed or an overwrite was interrupted. Delete the target and "
                    f"write it again."
                )
            if doc.get("mode") == "arrow" and set(options) <= {"columns"}:
                try:
                    exact = _csv_arrow.decode(_parse(stream, doc, location,
                                                     _csv_arrow.column_types(doc)), doc)
                except _disagreement_errors() as exc:
                    raise _inconsistent(location, self.sidecars(location)[0], exc) from None
                if exact.num_columns and exact.num_rows != doc["rows"]:
                    raise _inconsistent(location, self.sidecars(location)[0], ValueError(
                        f"{exact.num_rows} rows parsed, {doc['rows']} recorded"))
                if options.get("columns") is not None:
                    exact = exact.select(list(options["columns"]))
                return exact if kind == "arrow" else arrow_to_frame(exact)
            if doc.get("mode") != "exact" or not _sidecar_answers(doc, options):
                parsed: pd.DataFrame = pd.read_csv(stream, **options)
                return parsed
            try:
                table = _parse(stream, doc, location)
            except _disagreement_errors() as exc:
                raise _inconsistent(location, self.sidecars(location)[0], exc) from None
        if table.num_columns and table.num_rows != doc["rows"]:
            raise _inconsistent(location, self.sidecars(location)[0], ValueError(
                f"{table.num_rows} rows parsed, {doc['rows']} recorded"))
        try:
            frame = decode(table, doc, location, self.sidecars(location)[0])
        except _disagreement_errors() as exc:
            raise _inconsistent(location, self.sidecars(location)[0], exc) from None
        return select(frame, options.get("columns"))

    @contextlib.contextmanager
    def _bound_data(self, location: str, doc: dict[str, Any]
                    ) -> Iterator[tuple[dict[str, Any], pa.NativeFile | IO[bytes]]]:
        """The sidecar and an open data file it is bound to (module doc: one commit).

        A sidecar that does not describe the data file beside it is re-read until the
        two agree - a writer between its two renames, or one that replaced both after
        the sidecar was read - for at most ``SETTLE_SECONDS``; then the target is
        :class:`CorruptTargetError` (an overwrite interrupted between its renames).
        """
        fs, path = filesystem(location, **self.storage_options)
        deadline = time.monotonic() + SETTLE_SECONDS
        pause = 0.005
        quiet = 0  # checks in a row that found no writer holding the target's lock
        while True:
            if "binding" not in doc:  # written before sidecars were bound: size check only
                stream = _open_stream(fs, path)
                break
            stream = _open_if_bound(fs, path, doc["binding"])
            if stream is not None:
                break
            # Local commits rename under the target's lock: no holder, no commit under way.
            quiet = quiet + 1 if is_local(fs) and not is_locked(path) else 0
            if quiet >= 2 or time.monotonic() >= deadline:
                size = _data_size(fs, path)
                raise CorruptTargetError(
                    f"{redact(location)}: the data file ({size} bytes) is not the one its schema "
                    f"sidecar {self.sidecars(location)[0]} records {doc['bytes']} bytes "
                    f"of: an overwrite was interrupted between its two renames, or one "
                    f"of the files was changed or replaced. Delete the target and write it "
                    f"again."
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.1)
            fresh = self._load_sidecar(location)
            if fresh is None:
                raise FileNotFoundError(f"{redact(location)}: its schema sidecar disappeared while "
                                        f"reading (the target was deleted)")
            doc = fresh
        try:
            yield doc, stream
        finally:
            stream.close()

    # ---- cheap facts (optional capabilities, see prefect_ds._capabilities)

    def read_metadata(self, location: str) -> dict[str, str]:
        """The ``metadata`` given to :meth:`write`, from the sidecar alone.

        ``{}`` for a CSV without a sidecar, and for one whose size disagrees with its
        sidecar: a sidecar never vouches for data it did not describe.
        """
        doc = self._load_sidecar(location)
        if doc is None or not self._vouches(location, doc):
            return {}
        return {str(k): str(v) for k, v in (doc.get("metadata") or {}).items()}

    def target_info(self, location: str) -> TargetInfo:
        """Rows from the sidecar (when it matches the file), bytes and time from fsspec."""
        fs, path = filesystem(location, **self.storage_options)
        info = fs.info(path)
        doc = self._load_sidecar(location)
        rows = doc["rows"] if doc is not None and self._vouches(location, doc) else None
        return TargetInfo(rows=rows, bytes=info.get("size"), modified=modified_time(info))

    def _vouches(self, location: str, doc: Mapping[str, Any]) -> bool:
        """Whether the sidecar ``doc`` describes the data file now at ``location``."""
        fs, path = filesystem(location, **self.storage_options)
        try:
            if "binding" not in doc:
                return bool(int(fs.size(path)) == doc["bytes"])
            bound = doc["binding"]
            if is_local(fs):
                if binding.identity_matches(bound, os.stat(path)):
                    return True
            elif binding.etag_matches(bound, fs.info(path)):
                return True
            stream = _open_if_bound(fs, path, bound)
        except FileNotFoundError:
            return False
        if stream is None:
            return False
        stream.close()
        return True

    def _load_sidecar(self, location: str) -> dict[str, Any] | None:
        sidecar = self.sidecars(location)[0]
        fs, path = filesystem(sidecar, **self.storage_options)
        try:
            with fs.open(path, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return None
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict):
                raise TypeError(f"a JSON {type(doc).__name__}, not an object")
            sealed = binding.sealed(doc)
            if sealed is False or (sealed is None and "binding" in doc):
                raise CorruptTargetError(
                    f"{redact(location)}: its schema sidecar {sidecar} was edited after it was "
                    f"written (its check does not match its content). Delete the target "
                    f"and write it again."
                )
            version = doc["prefect_ds_csv"]
            doc["bytes"] = int(doc["bytes"])
            doc["rows"] = int(doc["rows"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptTargetError(
                f"{redact(location)}: its schema sidecar {redact(sidecar)} is not valid "
                f"({exc}). Delete "
                f"the target and write it again."
            ) from exc
        if version != SCHEMA_VERSION:
            raise CorruptTargetError(
                f"{redact(location)}: its schema sidecar {redact(sidecar)} has version "
                f"{version!r}; this "
                f"prefect-ds reads version {SCHEMA_VERSION}. Upgrade prefect-ds or rewrite it."
            )
        return dict(doc)


def _disagreement_errors() -> tuple[type[BaseException], ...]:
    """What interpreting a sidecar that disagrees with itself or its data file can raise.

    A function, evaluated only when an ``except`` clause meets an exception, so that
    importing this module needs no pyarrow.
    """
    return (KeyError, IndexError, StopIteration, TypeError, ValueError, pa.ArrowException)


def _inconsistent(location: str, sidecar: str, exc: BaseException) -> CorruptTargetError:
    return CorruptTargetError(
        f"{redact(location)}: the data file and its schema sidecar {redact(sidecar)} disagree "
        f"({type(exc).__name__}: {exc}); one of them was changed or damaged. Delete the "
        f"target and write it again."
    )


def _arrow_can_write(options: Mapping[str, Any]) -> bool:
    """Whether pyarrow's writer honours every option (else pandas' ``to_csv`` does)."""
    if not set(options) <= _WRITE_ARROW_KEYS:
        return False
    sep = options.get("sep", ",")
    if not (isinstance(sep, str) and len(sep) == 1 and sep not in _FORBIDDEN_DELIMITERS):
        return False
    return all(isinstance(options.get(k, True), bool) for k in ("header", "index"))


def _sidecar_answers(doc: Mapping[str, Any], options: Mapping[str, Any]) -> bool:
    """Whether the read options only restate what the sidecar records (or pick columns)."""
    if not set(options) <= _READ_ARROW_KEYS:
        return False
    for key in ("sep", "delimiter"):
        if key in options and options[key] != doc["delimiter"]:
            return False
    if "header" in options:
        wanted = doc["header"]
        given = options["header"]
        return (given in (0, "infer") and given is not False) if wanted else given is None
    return True


def _data_size(fs: Any, path: str) -> int | None:
    try:
        return int(fs.size(path))
    except (FileNotFoundError, TypeError, ValueError):
        return None


def _open_stream(fs: Any, path: str) -> pa.NativeFile | IO[bytes]:
    """The data file, open for reading (a native file locally: fastest for pyarrow)."""
    if is_local(fs):
        return pa.OSFile(path)
    handle: IO[bytes] = fs.open(path, "rb")
    return handle


def _open_if_bound(fs: Any, path: str, bound: Mapping[str, Any]
                   ) -> pa.NativeFile | IO[bytes] | None:
    """The data file open for reading if it is the one ``bound`` describes, else None.

    Locally the file's identity is compared before and after opening it (a rename
    keeps it, any rewrite changes it), so the open file is the bound one without
    reading it. A file with another identity (a copy) is read whole and hashed, as is
    an object on an object store; the bytes that were hashed are the bytes parsed.
    """
    if is_local(fs):
        before = os.stat(path)
        if binding.identity_matches(bound, before):
            stream = pa.OSFile(path)
            if binding.identity(os.stat(path)) == binding.identity(before):
                return stream
            stream.close()
            return None
        with open(path, "rb") as handle:
            data = handle.read()
    else:
        with fs.open(path, "rb") as handle:  # s3fs reads every range with If-Match: ETag
            data = handle.read()
    if len(data) != bound.get("size") or \
            hashlib.sha256(data).hexdigest() != bound.get("sha256"):
        return None
    return pa.BufferReader(data)


def _size(handle: IO[bytes]) -> int:
    size = handle.seek(0, io.SEEK_END)
    handle.seek(0)
    return int(size)


def _parse(stream: Any, doc: Mapping[str, Any], location: str,
           types: Mapping[str, pa.DataType] | None = None) -> pa.Table:
    """Parse the data file with the recorded column types; nothing is inferred."""
    names: list[str] = doc["csv_columns"]
    types = column_types(doc) if types is None else types
    if doc["rows"] == 0 or not names:
        return pa.schema([(n, types[n]) for n in names]).empty_table()
    read_options = pcsv.ReadOptions(column_names=None if doc["header"] else names)
    parse_options = pcsv.ParseOptions(
        delimiter=doc["delimiter"],
        newlines_in_values=doc["newlines_in_values"],
        ignore_empty_lines=False,  # a one-column row holding a null is an empty line
    )
    convert_options = pcsv.ConvertOptions(
        column_types=types,
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        true_values=["true"],
        false_values=["false"],
    )
    try:
        table = pcsv.read_csv(stream, read_options=read_options, parse_options=parse_options,
                              convert_options=convert_options)
    except pa.ArrowInvalid as exc:
        raise CorruptTargetError(
            f"{redact(location)}: the data file does not match its schema sidecar ({exc}). Delete "
            f"the target and write it again."
        ) from exc
    if table.column_names != names:
        raise CorruptTargetError(
            f"{redact(location)}: the data file's header {table.column_names[:5]!r}... differs "
            f"from "
            f"the columns its schema sidecar records {names[:5]!r}.... Delete the target "
            f"and write it again."
        )
    return table


@hookimpl
def register_formats(register: Register) -> None:
    register(CsvFormat())
