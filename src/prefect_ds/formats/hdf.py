"""HDF5 through h5py: one group per frame, one dataset (or small group) per column.

``file.h5`` stores the frame under the key ``data``; ``file.h5#group/key`` under
``group/key``, so one file can hold many frames. The layout (``docs/hdf-layout.md``)
is plain HDF5 that any tool reads; PyTables is not needed.

Writes are atomic: a new file is built in a temporary sibling (the other keys of an
existing file are copied into it with HDF5's own object copy) and renamed into place,
so a reader or a crash sees the old file or the new one, never a half-written key.
Writers of one local file take turns through a lock file beside it (threads and
processes alike), so no writer drops another's key; on S3 they take turns through a
lease object (an exclusive write, see ``prefect_ds._storage.lease``). Other object stores
have no such lock: there, writers of different keys of one object at the same moment
can lose one of the two keys (the last PUT wins), so give concurrent writers separate
objects.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import importlib.util
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import IO, TYPE_CHECKING, Any, ClassVar

from prefect_ds._errors import CorruptTargetError, MissingDependencyError, UnsupportedFrameError
from prefect_ds._format import FileFormat, TargetInfo
from prefect_ds._lazy import lazy
from prefect_ds._locations import split_fragment
from prefect_ds._redact import redact
from prefect_ds._storage.files import filesystem, is_local, modified_time, staged
from prefect_ds._storage.lease import S3Lease, supports_leases
from prefect_ds._storage.locks import FileLock
from prefect_ds.formats._hdf_codec import (
    LayoutError,
    Leaf,
    Node,
    Tree,
    decode_frame,
    encode_frame,
    frame_columns,
)
from prefect_ds.hookspecs import Register, hookimpl

SUFFIXES = (".h5", ".hdf5", ".hdf")
# h5py is imported on the first read or write; that it is installed is checked here, so
# the install hint travels with this format's registration.
if importlib.util.find_spec("h5py") is None:
    raise MissingDependencyError("hdf", "h5py", "pip install 'prefect-ds[hdf]'",
                                 suffixes=SUFFIXES)
if TYPE_CHECKING:
    import h5py
    import numpy as np
    import pandas as pd
    from h5py import h5a, h5d, h5g, h5o, h5p, h5s, h5t
else:
    np = lazy("numpy")
    pd = lazy("pandas")
    h5py = lazy("h5py")
    h5a, h5d, h5g, h5o, h5p, h5s, h5t = (
        lazy(f"h5py.{name}") for name in ("h5a", "h5d", "h5g", "h5o", "h5p", "h5s", "h5t"))

__all__ = ["HdfFormat", "UnsupportedFrameError"]

DEFAULT_KEY = "data"
METADATA_ATTR = "prefect_ds_metadata"  # the caller's {str: str} (fingerprints), as JSON
# HDF5 1.8 file format or newer: large attributes (many columns) need its dense storage.
LIBVER = ("v108", "latest")
_DATASET_OPTIONS = frozenset(
    {"compression", "compression_opts", "shuffle", "fletcher32", "scaleoffset", "chunks"}
)

_locks_guard = threading.Lock()
_locks: dict[str, threading.Lock] = {}


def _writers_lock(fs: Any, path: str) -> AbstractContextManager[Any]:
    """Writers of one file take turns, so none drops a key another has just written.

    Local files: a lock file beside the data file (``.name.h5.keys.prefect-ds-lock``),
    distinct from the checkpoint's target lock, which may already be held around this
    write. S3: a lease object (``.name.h5.keys.prefect-ds-lease``, taken with an
    exclusive write). Elsewhere: a lock per object within this process only.
    """
    if is_local(fs):
        return FileLock(f"{path}.keys")
    if supports_leases(fs):
        return S3Lease(fs, f"{path}.keys")
    name = f"{fs.protocol}:{path}"
    with _locks_guard:
        return _locks.setdefault(name, threading.Lock())


class HdfFormat(FileFormat):
    """Frames stored as column datasets in an HDF5 file, one key (group) per frame.

    ``write`` accepts h5py dataset options (``compression="gzip"``, ``compression_opts``,
    ``shuffle``, ``fletcher32``, ``scaleoffset``, ``chunks``), applied to every non-empty
    dataset, and ``index=False`` (leave the index out); by default nothing is compressed
    (fastest). ``read`` accepts ``columns=[...]``
    to load only some columns.
    """

    name = "hdf"
    suffixes = SUFFIXES
    default_read_kwargs: ClassVar[dict[str, Any]] = {}
    default_write_kwargs: ClassVar[dict[str, Any]] = {}

    # ------------------------------------------------------------------ locations

    def data_location(self, location: str) -> str:
        return split_fragment(location)[0]

    def key(self, location: str) -> str:
        """The group a location names: its ``#fragment``, else ``"data"``."""
        fragment = split_fragment(location)[1].strip("/")
        if not fragment:
            return DEFAULT_KEY
        parts = fragment.split("/")
        if any(part in ("", ".", "..") or "\x00" in part for part in parts):
            raise ValueError(
                f"the key {fragment!r} in {redact(location)!r} is not a valid HDF5 path; use names "
                f"separated by single '/', e.g. 'file.h5#results/2024'"
            )
        return "/".join(parts)

    def list_locations(self, pattern: str) -> list[str]:
        """Stored frames matching ``pattern``; ``*`` may stand in the file and in the key
        (``clean.h5#sales/*`` lists every frame under ``sales`` in that file)."""
        path, _, fragment = pattern.partition("#")
        if not any(c in fragment for c in "*?["):
            return super().list_locations(pattern)
        found = []
        for data in super().list_locations(path):
            try:
                with self._open(data) as handle:
                    keys = _frame_keys(handle)
            except (OSError, CorruptTargetError):
                continue  # not an HDF5 file prefect-ds can read: it holds no targets
            found += [f"{data}#{key}" for key in sorted(keys)
                      if fnmatch.fnmatchcase(key, fragment.strip("/"))]
        return found

    @contextlib.contextmanager
    def _open(self, location: str) -> Iterator[h5py.File]:
        """The HDF5 file at ``location`` opened for reading, locally or through fsspec."""
        data = self.data_location(location)
        fs, path = filesystem(data, **self.storage_options)
        if not fs.isfile(path):
            raise FileNotFoundError(f"no HDF5 file at {redact(data)!r} (location "
                                    f"{redact(location)!r})")
        with contextlib.ExitStack() as stack:
            source: str | IO[bytes] = path
            if not is_local(fs):
                source = stack.enter_context(fs.open(path, "rb"))
            try:
                # No HDF5 file locks: files are replaced by rename, never changed in place,
                # and the locks fail on file systems without lock support (some NFS).
                handle = stack.enter_context(h5py.File(source, "r", locking=False))
            except (PermissionError, FileNotFoundError):
                raise
            except OSError as exc:
                raise CorruptTargetError(
                    f"{redact(data)!r} is not a readable HDF5 file ({exc}); it is truncated or not "
                    f"HDF5. Delete it and write the result again."
                ) from None
            yield handle

    # ------------------------------------------------------------------ read

    def read(self, location: str, **kwargs: Any) -> pd.DataFrame:
        options = self.read_options(kwargs)
        wanted = options.pop("columns", None)
        if options:
            raise TypeError(
                f"the hdf format's read takes only columns=[...], got {sorted(options)}")
        key = self.key(location)
        with self._open(location) as handle:
            group = _get(handle, key)
            if not isinstance(group, h5py.Group) or "layout" not in group.attrs:
                raise FileNotFoundError(
                    f"no frame stored under key {key!r} in "
                    f"{redact(self.data_location(location))!r}; "
                    f"it holds: {', '.join(_frame_keys(handle)) or 'no frames'}"
                )
            attrs = dict(group.attrs)
            try:
                stored = frame_columns(attrs)
            except LayoutError as exc:
                raise self._corrupt(location, key, str(exc)) from None
            columns = stored if wanted is None else list(wanted)
            missing = [c for c in columns if c not in stored]
            if missing:
                raise KeyError(f"{redact(location)!r} has no column(s) {missing}; it has {stored}")
            try:
                root = Node(attrs, _load_members(group, ["index"]))
                stored_columns = group.get("columns")
                if isinstance(stored_columns, h5py.Group):
                    root.members["columns"] = Node({}, _load_members(stored_columns, columns))
                return decode_frame(root, columns)
            except KeyError as exc:
                raise self._corrupt(location, key, f"a group or dataset is missing ({exc})"
                                    ) from None
            except (LayoutError, OSError, ValueError, TypeError) as exc:
                raise self._corrupt(location, key, str(exc)) from None

    def _corrupt(self, location: str, key: str, problem: str) -> CorruptTargetError:
        return CorruptTargetError(
            f"the frame {key!r} in {redact(self.data_location(location))!r} is damaged: {problem}. "
            f"Delete it and write the result again."
        )

    # ------------------------------------------------------------------ write

    def write(self, df: pd.DataFrame, location: str, *,
              metadata: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        """Write ``df`` under the location's key; ``metadata`` (``{str: str}``) becomes the
        frame group's ``prefect_ds_metadata`` attribute (JSON), written with it."""
        options = self.write_options(kwargs)
        index = options.pop("index", True)
        if index is not None and not isinstance(index, bool):
            raise UnsupportedFrameError(
                f"the hdf format's index option is True, False or None, not {index!r}")
        if index is False and isinstance(df, pd.DataFrame):
            df = df.reset_index(drop=True)
        unknown = sorted(set(options) - _DATASET_OPTIONS)
        if unknown:
            raise TypeError(
                f"the hdf format's write takes only h5py dataset options "
                f"({', '.join(sorted(_DATASET_OPTIONS))}), got {unknown}"
            )
        key = self.key(location)
        tree = encode_frame(df)  # every unsupported column fails here, before any I/O
        if metadata:
            tree.attrs[METADATA_ATTR] = json.dumps(
                {str(k): str(v) for k, v in metadata.items()}, sort_keys=True)
        self._rewrite(location, key, tree, options)

    def read_metadata(self, location: str) -> dict[str, str]:
        """The ``metadata`` given to :meth:`write`, from the group's attributes alone."""
        with self._open(location) as handle:
            group = _get(handle, self.key(location))
            raw = group.attrs.get(METADATA_ATTR) if isinstance(group, h5py.Group) else None
        if raw is None:
            return {}
        doc = json.loads(_text(raw))
        return {str(k): str(v) for k, v in doc.items()} if isinstance(doc, dict) else {}

    def target_info(self, location: str) -> TargetInfo:
        """Rows from the frame's ``nrows`` attribute; bytes and time of the whole file."""
        fs, path = filesystem(self.data_location(location), **self.storage_options)
        stat = fs.info(path)
        with self._open(location) as handle:
            group = _get(handle, self.key(location))
            rows = group.attrs.get("nrows") if isinstance(group, h5py.Group) else None
        return TargetInfo(rows=None if rows is None else int(rows), bytes=stat.get("size"),
                          modified=modified_time(stat))

    def _rewrite(self, location: str, key: str, tree: Node | None,
                 options: dict[str, Any]) -> None:
        """Stage a new file: the old file's other keys, plus ``tree`` at ``key`` (or not)."""
        data = self.data_location(location)
        fs, path = filesystem(data, **self.storage_options)
        parts = key.split("/")
        with _writers_lock(fs, path):
            existing = bool(fs.isfile(path))
            if existing:
                with self._open(location) as source:
                    if tree is None:
                        target = _get(source, key)
                        if target is None:
                            return
                        if not (isinstance(target, h5py.Group) and "layout" in target.attrs):
                            raise ValueError(
                                f"cannot delete {redact(location)!r}: {key!r} in that file is "
                                f"not a "
                                f"prefect-ds frame; remove it with an HDF5 tool instead"
                            )
                        remove_file = not _has_other_objects(source, parts)
                    else:
                        _check_key(source, parts, location)
                if tree is None and remove_file:
                    fs.rm_file(path)
                    return
            elif tree is None:
                return
            # The new file is closed before staged() renames it into place.
            with staged(data, **self.storage_options) as (temp,), h5py.File(
                    temp, "w", libver=LIBVER, locking=False) as out:
                if existing:
                    with self._open(location) as source:
                        _copy_except(source, out, parts)
                if tree is not None:
                    _write_frame(out, key, tree, options)

    # ------------------------------------------------------------------ exists / delete

    def exists(self, location: str) -> bool:
        data = self.data_location(location)
        fs, path = filesystem(data, **self.storage_options)
        if not fs.isfile(path):
            return False
        with self._open(location) as handle:
            group = _get(handle, self.key(location))
            return (isinstance(group, h5py.Group) and "layout" in group.attrs
                    and bool(group.attrs.get("complete", False)))

    def delete(self, location: str) -> None:
        """Remove the key's frame; the file goes too when nothing else is left in it."""
        self._rewrite(location, self.key(location), None, {})


# ---------------------------------------------------------------------- h5py helpers


def _get(handle: h5py.Group, key: str) -> h5py.Group | h5py.Dataset | None:
    try:
        return handle.get(key)
    except (KeyError, TypeError, ValueError):
        return None


def _frame_keys(handle: h5py.File) -> list[str]:
    keys: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Group) and "layout" in obj.attrs:
            keys.append(name)

    handle.visititems(visit)
    return keys


def _check_key(source: h5py.File, parts: list[str], location: str) -> None:
    """Refuse a key that would nest in, or swallow, something that is not one frame."""
    group: h5py.Group = source
    for depth, part in enumerate(parts):
        child = group.get(part)
        if child is None:
            return
        here = "/".join(parts[: depth + 1])
        is_frame = isinstance(child, h5py.Group) and "layout" in child.attrs
        last = depth == len(parts) - 1
        if (is_frame or isinstance(child, h5py.Dataset)) and not last:
            raise ValueError(
                f"cannot store {redact(location)!r}: {here!r} in that file is already a "
                f"{'frame' if is_frame else 'dataset'}, and a frame cannot go inside it. "
                f"Use another key."
            )
        if last and not is_frame:
            raise ValueError(
                f"cannot store {redact(location)!r}: {here!r} in that file is a "
                f"{type(child).__name__.lower()} that is not a prefect-ds frame (it may hold "
                f"other frames), and writing would replace it. Use another key."
            )
        group = child


def _has_other_objects(source: h5py.Group, parts: list[str]) -> bool:
    """Whether anything but the path down to ``parts`` would be left in the file."""
    group = source
    for part in parts[:-1]:
        if len(group) > 1 or len(group.attrs):
            return True
        group = group[part]
    return len(group) > 1 or bool(len(group.attrs))


def _copy_except(source: h5py.Group, target: h5py.Group, parts: list[str]) -> None:
    """Copy ``source`` into ``target`` without the object at ``parts`` (HDF5 object copy)."""
    for name, value in source.attrs.items():
        target.attrs[name] = value
    for name in source:
        if name != parts[0]:
            source.copy(source[name], target, name=name)
        elif len(parts) > 1:
            child = target.create_group(name)
            _copy_except(source[name], child, parts[1:])
            if len(child) == 0 and len(child.attrs) == 0:
                del target[name]  # the path to a deleted key leaves no empty groups behind


def _write_frame(out: h5py.File, key: str, tree: Node, options: dict[str, Any]) -> None:
    """Write ``tree`` at ``key``; the ``complete`` attribute is set last."""
    group = out.create_group(key)
    _write_members(group, tree, options)
    group.attrs["complete"] = True


# Columns are written and read through h5py's low-level API: per dataset it costs less
# than half of the high-level path, which matters for frames with thousands of columns.
# The file is the same as h5py's high-level API writes (UTF-8 link names; attributes as
# h5py stores them: variable-length UTF-8 strings, int64, HDF5 enum booleans).


@functools.cache
def _string_dtype() -> Any:
    return h5py.string_dtype()


def _link_plist() -> Any:
    lcpl = h5p.create(h5p.LINK_CREATE)
    lcpl.set_char_encoding(h5t.CSET_UTF8)
    return lcpl


def _write_members(group: h5py.Group, node: Node, options: dict[str, Any]) -> None:
    _write_attrs(group.id, node.attrs)
    lcpl = _link_plist()
    for name, member in node.members.items():
        if isinstance(member, Node):
            _write_members(group.create_group(name), member, options)
        elif options and member.data.size:  # filters: h5py builds the chunked layout
            dataset = group.create_dataset(name, data=member.data, **options)
            _write_attrs(dataset.id, member.attrs)
        else:
            data = np.ascontiguousarray(member.data)
            dcpl = h5p.create(h5p.DATASET_CREATE)
            dcpl.set_obj_track_times(False)  # as h5py does: equal frames, equal bytes
            file_type = h5t.py_create(data.dtype, logical=True)
            dataset_id = h5d.create(group.id, name.encode(), file_type,
                                    h5s.create_simple(data.shape), dcpl=dcpl, lcpl=lcpl)
            if data.size:
                dataset_id.write(h5s.ALL, h5s.ALL, data)
            _write_attrs(dataset_id, member.attrs)


def _write_attrs(object_id: Any, attrs: dict[str, Any]) -> None:
    for name, value in attrs.items():
        data = np.asarray(value, dtype=_string_dtype() if isinstance(value, (str, list)) else None)
        attr = h5a.create(object_id, name.encode(), h5t.py_create(data.dtype, logical=True),
                          h5s.create_simple(data.shape))
        attr.write(data, mtype=h5t.py_create(data.dtype))


def _read_attrs(object_id: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for index in range(h5a.get_num_attrs(object_id)):
        attr = h5a.open(object_id, index=index)
        value: Any = None  # an empty (NULL dataspace) attribute
        if attr.shape is not None:
            value = np.empty(attr.shape, dtype=attr.dtype)
            attr.read(value)
            if value.dtype.kind in "OS":  # strings come back as bytes: decode as h5py does
                value = np.array([_text(v) for v in value.flat], dtype=object).reshape(
                    value.shape)
            if value.ndim == 0:
                value = value[()]
        attrs[_text(attr.name)] = value
    return attrs


def _text(value: Any) -> Any:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def _load(object_id: Any) -> Tree:
    """Read a group or dataset (a low-level id) into the codec's tree, whole."""
    attrs = _read_attrs(object_id)
    if isinstance(object_id, h5d.DatasetID):
        data = np.empty(object_id.shape, dtype=object_id.dtype)
        if data.size:
            object_id.read(h5s.ALL, h5s.ALL, data)
        return Leaf(data, attrs)
    if not isinstance(object_id, h5g.GroupID):
        raise LayoutError(f"unexpected HDF5 object {object_id!r}")
    return Node(attrs, {_text(name): _load(h5o.open(object_id, name)) for name in object_id})


def _load_members(group: h5py.Group, names: list[str]) -> dict[str, Tree]:
    """The named members that exist (the codec reports the missing ones by name)."""
    found: dict[str, Tree] = {}
    for name in names:
        try:
            object_id = h5o.open(group.id, name.encode())
        except KeyError:
            continue
        found[name] = _load(object_id)
    return found


@hookimpl
def register_formats(register: Register) -> None:
    register(HdfFormat())
