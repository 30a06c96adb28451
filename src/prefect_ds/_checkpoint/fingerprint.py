"""What ``checkpoint(..., invalidate_on=...)`` hashes, and how a stored record is compared.

A fingerprint is a small record ``{part: digest}`` stored with the target, so a mismatch
can say which part changed. The parts:

``"code"``
    The checkpointed function's source and the sources of the helpers it names, parsed
    with :mod:`ast` and dumped without line numbers, docstrings or decorators: reformatting,
    comments, docstrings and the decorators above the function do not count, a changed
    statement, expression, name or literal does. Helpers are the module-level functions
    *of the same module* that the function refers to by name (Prefect tasks and
    checkpointed functions count through their underlying function), followed
    recursively up to 8 levels and 64 functions; a referenced module-level constant of a
    plain type (``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``, ``bytes``
    and tuples / frozensets of them) counts by its value. Not hashed: functions of other
    modules (libraries, your other modules), classes, methods called through objects,
    and other global values; pass those as arguments (so ``"inputs"`` sees them) or add a
    callable. A function whose source cannot be read (defined in ``exec``) is hashed by
    its bytecode, constants and names instead, which also changes with line numbers.

``"inputs"``
    The call's argument values (defaults applied), by name. DataFrames, Series and
    Indexes by content: column names, dtypes, the index and every column's values
    (numeric, boolean and datetime columns as their raw bytes, categoricals as codes plus
    categories, anything else through its Arrow representation, falling back to
    :func:`pandas.util.hash_pandas_object`), never by pickling. pyarrow Tables and polars
    DataFrames by content too, through Arrow and never pandas (:func:`hash_table`); a
    polars LazyFrame or an Arrow stream cannot be hashed without computing or consuming
    it, and raises. numpy arrays by dtype, shape and bytes. ``None``, booleans, numbers,
    strings, bytes, dates and times, ``Decimal``, ``UUID``, paths and enums by a canonical
    ``repr``; lists, tuples, sets and dicts recursively (sets and dicts in sorted order).
    Anything else raises :class:`FingerprintError` naming the argument: give it a callable
    instead.

a callable ``f(arguments) -> str``
    Called with the same ``{name: value}`` mapping; its string is hashed. The part is
    named after the callable (``"callable:<qualified name>"``).

Digests are SHA-256 (OpenSSL's, hardware-accelerated on current x86 and ARM CPUs, which
made it the fastest of :mod:`hashlib`'s choices here) truncated to 128 bits.
"""

from __future__ import annotations

import ast
import datetime as dt
import decimal
import enum
import hashlib
import inspect
import json
import os
import pathlib
import textwrap
import threading
import types
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from prefect_ds._errors import FingerprintError
from prefect_ds._storage import kinds as _kinds

METADATA_KEY = "prefect_ds.fingerprint"
RECORD_VERSION = 1
_DIGEST_CHARS = 32
_MAX_DEPTH = 8
_MAX_FUNCTIONS = 64
_PLAIN = (type(None), bool, int, float, complex, str, bytes)

Part = Literal["code", "inputs"] | Callable[[Mapping[str, Any]], str]


# -- the record -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fingerprint:
    """``{part: digest}`` for one call; ``encode`` / ``decode`` for storing it as text."""

    parts: Mapping[str, str]

    def encode(self) -> str:
        return json.dumps({"version": RECORD_VERSION, "parts": dict(self.parts)},
                          sort_keys=True, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str | None) -> Fingerprint | None:
        """The stored record, or None when ``text`` is missing or not a record we wrote."""
        if not text:
            return None
        try:
            doc = json.loads(text)
            parts = doc["parts"]
            if doc.get("version") != RECORD_VERSION or not isinstance(parts, dict):
                return None
            return cls({str(k): str(v) for k, v in parts.items()})
        except (ValueError, TypeError, KeyError):
            return None

    def changed(self, stored: Fingerprint) -> list[str]:
        """The parts of this fingerprint that ``stored`` lacks or records differently."""
        return [name for name, digest in self.parts.items() if stored.parts.get(name) != digest]


def check_parts(invalidate_on: Iterable[Part], owner: str) -> tuple[Part, ...]:
    """Validate ``invalidate_on`` when decorating, so a typo fails at import."""
    if isinstance(invalidate_on, str):
        invalidate_on = (invalidate_on,)  # type: ignore[assignment]
    parts = tuple(invalidate_on)
    for part in parts:
        if part in ("code", "inputs") or (callable(part) and not isinstance(part, str)):
            continue
        raise FingerprintError(
            f"{owner}: invalidate_on accepts 'code', 'inputs' and callables "
            f"f(arguments) -> str; got {part!r}"
        )
    return parts


def part_name(part: Part) -> str:
    if isinstance(part, str):
        return part
    return f"callable:{getattr(part, '__qualname__', None) or type(part).__qualname__}"


def _digest(h: Any) -> str:
    return str(h.hexdigest()[:_DIGEST_CHARS])


# -- "code" -----------------------------------------------------------------------------------


def code_digest(fn: Callable[..., Any]) -> str:
    """The digest of ``fn``'s normalised source and the helpers it names (module doc)."""
    h = hashlib.sha256()
    root = _underlying(fn)
    seen: set[int] = set()
    queue: list[tuple[Any, int]] = [(root, 0)]
    module = getattr(root, "__module__", None)
    while queue and len(seen) < _MAX_FUNCTIONS:
        func, depth = queue.pop(0)
        if id(func) in seen:
            continue
        seen.add(id(func))
        text, names = _normalised(func)
        h.update(f"function {func.__qualname__}\n".encode())
        h.update(text.encode())
        if depth >= _MAX_DEPTH:
            continue
        namespace = getattr(func, "__globals__", {})
        for name in sorted(names):
            if name not in namespace:
                continue
            value = namespace[name]
            helper = _underlying(value)
            if (inspect.isfunction(helper) and helper.__module__ == module
                    and id(helper) not in seen):
                queue.append((helper, depth + 1))
            elif _plain_constant(value):
                h.update(f"constant {name} = {_canonical(value, name)}\n".encode())
    return _digest(h)


def _underlying(obj: Any) -> Any:
    """A Prefect task's or a decorated function's own function."""
    if type(obj).__module__.startswith("prefect."):  # a Task keeps the user's function
        fn = getattr(obj, "fn", None)
        if callable(fn):
            obj = fn
    try:
        return inspect.unwrap(obj) if callable(obj) else obj
    except ValueError:
        return obj


def _plain_constant(value: Any) -> bool:
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (tuple, frozenset)):
        return all(_plain_constant(v) for v in value)
    return False


class _StripDocs(ast.NodeTransformer):
    """Remove docstrings and decorators, collect the names the code loads."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def _strip(self, node: Any) -> Any:
        body = node.body
        if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
        node.decorator_list = []
        return self._strip(self.generic_visit(node))

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> Any:
        node.decorator_list = []
        return self._strip(self.generic_visit(node))

    def visit_ClassDef(self, node: ast.ClassDef) -> Any:
        return self._strip(self.generic_visit(node))

    def visit_Name(self, node: ast.Name) -> Any:
        if isinstance(node.ctx, ast.Load):
            self.names.add(node.id)
        return node


def _normalised(func: Any) -> tuple[str, set[str]]:
    """``ast.dump`` of ``func``'s definition (module doc) and the global names it loads."""
    try:
        source = textwrap.dedent(inspect.getsource(func))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError, IndentationError):
        return _bytecode(func.__code__), set(func.__code__.co_names)
    definitions = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if len(definitions) != 1:  # a lambda, or a source line holding more than a def
        return _bytecode(func.__code__), set(func.__code__.co_names)
    stripper = _StripDocs()
    node = stripper.visit(definitions[0])
    return ast.dump(node, annotate_fields=True, include_attributes=False), stripper.names


def _bytecode(code: types.CodeType) -> str:
    consts = [_bytecode(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts]
    return f"{code.co_code.hex()}|{consts}|{code.co_names}|{code.co_varnames}"


# -- "inputs" ---------------------------------------------------------------------------------


def inputs_digest(arguments: Mapping[str, Any], owner: str) -> str:
    """The digest of the call's argument values (module doc)."""
    h = hashlib.sha256()
    for name in sorted(arguments):
        h.update(f"argument {name}\n".encode())
        _hash_value(h, arguments[name], name, owner)
    return _digest(h)


def _hash_value(h: Any, value: Any, name: str, owner: str) -> None:
    try:
        _hash_content(h, value, name, owner)
    except Unhashable as exc:
        where = f" of {owner}" if owner else ""
        raise FingerprintError(
            f"cannot fingerprint argument {name!r}{where}: it {exc}. Describe what matters "
            f"in it with a callable, e.g. invalidate_on=('code', lambda args: "
            f"str(args[{name!r}].shape)), convert such columns to plain values, or drop "
            f"'inputs' from invalidate_on."
        ) from None


def _hash_content(h: Any, value: Any, name: str, owner: str) -> None:
    kind = _kinds.kind_of(value)
    if kind in (_kinds.ARROW, _kinds.POLARS):
        h.update(f"{kind}\n".encode())
        if kind == _kinds.POLARS:
            objects = [n for n, t in value.schema.items() if str(t) == "Object"]
            if objects:  # arbitrary Python objects: never pickled
                raise Unhashable(f"has polars Object columns {objects[:5]!r}, which have no "
                                 f"content hash")
        hash_table(h, value if kind == _kinds.ARROW else value.to_arrow())
    elif kind in (_kinds.LAZY, _kinds.STREAM):
        raise Unhashable(
            f"is a {kind}, whose content exists only once it is computed or read (hashing it "
            f"would consume it); pass it collected, or describe it with a callable")
    elif isinstance(value, pd.DataFrame):
        hash_frame(h, value)
    elif isinstance(value, (pd.Series, pd.Index)):
        h.update(b"series\n" if isinstance(value, pd.Series) else b"index\n")
        if isinstance(value, pd.Series):
            h.update(f"{value.name!r}\n".encode())
            _hash_index(h, value.index)
            _hash_column(h, value)
        else:
            _hash_index(h, value)
    elif isinstance(value, np.ndarray) and value.dtype.kind != "O":
        h.update(f"ndarray {value.dtype.str} {value.shape}\n".encode())
        h.update(np.ascontiguousarray(value).view(np.uint8).data)
    elif isinstance(value, np.ndarray):
        h.update(f"object ndarray {value.shape}\n".encode())
        _hash_column(h, pd.Series(value.ravel(), copy=False))
    else:
        h.update(_canonical(value, name, owner).encode())
        h.update(b"\n")


def _canonical(value: Any, name: str, owner: str = "") -> str:
    """A repr that equal values share, whatever their construction (module doc)."""
    if isinstance(value, (*_PLAIN, np.generic)):
        return f"{type(value).__name__}:{value!r}"
    if isinstance(value, (dt.datetime, dt.date, dt.time, dt.timedelta, decimal.Decimal,
                          uuid.UUID, pathlib.PurePath, pd.Timestamp, pd.Timedelta)):
        return f"{type(value).__name__}:{value!r}"
    if isinstance(value, enum.Enum):
        return f"enum:{type(value).__module__}.{type(value).__qualname__}.{value.name}"
    if isinstance(value, (list, tuple)):
        items = ",".join(_canonical(v, name, owner) for v in value)
        return f"{type(value).__name__}[{items}]"
    if isinstance(value, (set, frozenset)):
        return f"set[{','.join(sorted(_canonical(v, name, owner) for v in value))}]"
    if isinstance(value, Mapping):
        pairs = sorted(
            f"{_canonical(k, name, owner)}:{_canonical(v, name, owner)}" for k, v in value.items()
        )
        return f"dict[{','.join(pairs)}]"
    if (isinstance(value, (pd.DataFrame, pd.Series, pd.Index, np.ndarray))
            or _kinds.kind_of(value) is not None):
        h = hashlib.sha256()
        _hash_value(h, value, name, owner)
        return f"{type(value).__name__}:{_digest(h)}"
    kind = type(value)
    where = f" of {owner}" if owner else ""
    raise FingerprintError(
        f"cannot fingerprint argument {name!r}{where}: a {kind.__module__}.{kind.__qualname__} "
        f"has no content hash prefect-ds knows (it never pickles). Describe what matters in "
        f"it with a callable, e.g. invalidate_on=('code', lambda args: str(args[{name!r}]."
        f"version)), or drop 'inputs' from invalidate_on."
    )


def hash_frame(h: Any, df: pd.DataFrame) -> None:
    """Feed a DataFrame's shape, labels, dtypes, index and values to ``h``.

    Each column is hashed on its own and its digest fed to ``h``; a large frame's
    columns are hashed on several threads (:mod:`hashlib` releases the GIL while it
    hashes), which gives the same digest as hashing them one after the other.
    """
    h.update(f"frame {df.shape}\n".encode())
    _hash_index(h, df.columns)
    columns = [df.iloc[:, position] for position in range(df.shape[1])]
    if df.size >= _PARALLEL_CELLS and len(columns) > 1:
        digests = list(_pool().map(_column_digest, columns))
    else:
        digests = [_column_digest(column) for column in columns]
    for digest in digests:
        h.update(digest)
    _hash_index(h, df.index)


def hash_table(h: Any, table: Any) -> None:
    """Feed an Arrow table's (or a polars frame's, as Arrow) shape, schema and values to ``h``.

    Each column is combined into one chunk (chunking never changes the digest) and hashed
    through Arrow's IPC encoding; a dictionary column by its values, so two frames whose
    categories were numbered differently (a polars string cache) hash alike. No pandas.
    """
    h.update(f"table {table.num_rows} {table.num_columns}\n".encode())
    for field in table.schema:
        h.update(f"{field.name!r}:{field.type}:{sorted((field.metadata or {}).items())}\n"
                 .encode())
    columns = list(table.columns)
    if table.num_rows * len(columns) >= _PARALLEL_CELLS and len(columns) > 1:
        digests = list(_pool().map(_arrow_column_digest, columns))
    else:
        digests = [_arrow_column_digest(column) for column in columns]
    for digest in digests:
        h.update(digest)


def _arrow_column_digest(column: Any) -> bytes:
    import pyarrow as pa

    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    array = (column.chunk(0) if column.num_chunks == 1 else
             column.combine_chunks() if column.num_chunks else pa.array([], column.type))
    h = hashlib.sha256()
    batch = pa.table({"v": array})
    with pa.ipc.new_stream(_HashSink(h), batch.schema) as writer:
        writer.write_table(batch)
    return h.digest()


_PARALLEL_CELLS = 1_000_000
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            workers = max(1, min(8, os.cpu_count() or 1))
            _executor = ThreadPoolExecutor(workers, thread_name_prefix="prefect-ds-hash")
        return _executor


def _forget_pool_after_fork() -> None:
    # A forked child has none of the parent's threads: give it a pool of its own.
    global _executor, _executor_lock
    _executor = None
    _executor_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _column_digest(column: pd.Series) -> bytes:
    h = hashlib.sha256()
    try:
        _hash_column(h, column)
    except Unhashable as exc:
        raise Unhashable(f"has a column {column.name!r} that {exc}") from None
    return h.digest()


def _hash_index(h: Any, index: pd.Index) -> None:
    if isinstance(index, pd.RangeIndex):
        h.update(f"range {index.start} {index.stop} {index.step} {index.name!r}\n".encode())
        return
    h.update(f"index {type(index).__name__} {list(index.names)!r} {index.nlevels}\n".encode())
    if isinstance(index, pd.MultiIndex):
        for level in range(index.nlevels):
            _hash_column(h, index.get_level_values(level))
    else:
        _hash_column(h, index)


def _dtype_text(dtype: Any) -> str:
    """A dtype as text that tells apart every two dtypes ``assert_frame_equal`` does."""
    if isinstance(dtype, pd.CategoricalDtype):  # its categories are hashed as values
        return f"category ordered={bool(dtype.ordered)}"
    if isinstance(dtype, np.dtype):
        return str(dtype)
    return repr(dtype)  # extension dtypes: storage, na_value, unit, tz...


def _hash_column(h: Any, values: pd.Series | pd.Index) -> None:
    """One column's dtype and values, without copying numeric data."""
    dtype = values.dtype
    h.update(f"column {_dtype_text(dtype)} {len(values)}\n".encode())
    if isinstance(dtype, np.dtype) and dtype.kind in "biufcmM":
        data = np.ascontiguousarray(values.to_numpy(copy=False))
        h.update(data.view(np.uint8).data)
        return
    if isinstance(dtype, pd.CategoricalDtype):
        categorical = pd.Categorical(values)
        h.update(np.ascontiguousarray(categorical.codes).view(np.uint8).data)
        _hash_column(h, dtype.categories)
        return
    if isinstance(dtype, np.dtype) and dtype.kind == "O":
        _hash_objects(h, values)
        return
    _hash_arrow(h, values)


# Object columns whose items all have one plain type go through Arrow (fast); any other
# mix is hashed item by item with each item's type, so 1 and "1", 1 and 1.0, None and
# NaN stay apart.
_ARROW_KINDS = frozenset({"string", "bytes", "integer", "floating", "boolean", "empty"})
_ITEM_TYPES = (type(None), bool, int, float, complex, str, bytes, np.generic, dt.datetime,
               dt.date, dt.time, dt.timedelta, decimal.Decimal, uuid.UUID, pd.Timestamp,
               pd.Timedelta, type(pd.NaT), type(pd.NA), pd.Period, pd.Interval)


class Unhashable(TypeError):
    """A column holds an item with no content hash (a list, a dict, an object...)."""


def _hash_objects(h: Any, values: pd.Series | pd.Index) -> None:
    kind = pd.api.types.infer_dtype(values, skipna=False)
    h.update(f"objects {kind}\n".encode())
    if kind in _ARROW_KINDS and _hash_arrow(h, values, fallback=False):
        return
    for item in values:
        if not isinstance(item, _ITEM_TYPES):
            raise Unhashable(
                f"holds a {type(item).__module__}.{type(item).__qualname__} ({item!r:.40}), "
                f"which has no content hash"
            )
        h.update(f"{type(item).__module__}.{type(item).__qualname__}:{item!r}\x00".encode())


def _hash_arrow(h: Any, values: pd.Series | pd.Index, fallback: bool = True) -> bool:
    """Hash through Arrow's IPC encoding (sliced buffers trimmed), else pandas' own hash.

    Without ``fallback``, return False (having hashed nothing) when Arrow cannot take it.
    """
    import pyarrow as pa

    try:
        converted = pa.array(values, from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        if not fallback:
            return False
        try:
            hashed = pd.util.hash_pandas_object(pd.Series(values, copy=False), index=False)
        except TypeError as exc:
            raise Unhashable(f"has items with no content hash ({exc})") from None
        h.update(b"pandas-hash\n")
        h.update(np.ascontiguousarray(hashed.to_numpy()).view(np.uint8).data)
        return True
    if isinstance(converted, pa.ChunkedArray):  # chunking must not change the digest
        converted = (converted.chunk(0) if converted.num_chunks == 1
                     else converted.combine_chunks())
    batch = pa.table({"v": converted})
    sink = _HashSink(h)
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_table(batch)
    return True


class _HashSink:
    """A write-only file object that feeds what Arrow writes straight into a hash."""

    def __init__(self, h: Any) -> None:
        self.h = h
        self.closed = False

    def write(self, data: Any) -> int:
        self.h.update(data)
        return len(memoryview(data))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


# -- everything together ----------------------------------------------------------------------


def compute(
    parts: Sequence[Part],
    fn: Callable[..., Any],
    arguments: Mapping[str, Any],
    owner: str,
    code_cache: dict[str, str] | None = None,
) -> Fingerprint:
    """The fingerprint of one call for the requested ``parts``.

    ``code_cache`` keeps the code digest between calls of one function (its source does
    not change while the process runs).
    """
    record: dict[str, str] = {}
    for part in parts:
        if part == "code":
            if code_cache is not None and "code" in code_cache:
                record["code"] = code_cache["code"]
            else:
                record["code"] = code_digest(fn)
                if code_cache is not None:
                    code_cache["code"] = record["code"]
        elif part == "inputs":
            record["inputs"] = inputs_digest(arguments, owner)
        elif callable(part):
            text = part(arguments)
            if not isinstance(text, str):
                raise FingerprintError(
                    f"{owner}: the invalidate_on callable {part_name(part)!r} returned a "
                    f"{type(text).__name__}; it must return a str describing what its result "
                    f"depends on"
                )
            record[part_name(part)] = _digest(hashlib.sha256(text.encode()))
    return Fingerprint(record)
