"""The placeholder left behind when DSTaskRunner releases a task run's result.

A released result stays visible as a :class:`ReleasedResult` that says what was there
(task, run id, type, size) instead of silently turning into ``None``. When the task
was checkpointed it also knows where the frame is stored, so it can be read back.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, NoReturn
from uuid import UUID

from prefect_ds._errors import ResultReleasedError
from prefect_ds._redact import redact
from prefect_ds._release.targets import StoredTarget


def describe_size(value: Any) -> tuple[str, int]:
    """Return ``(shape, bytes)`` for a released value, cheaply.

    Frames and Series report their shallow ``memory_usage`` (a deep count walks every
    string and can take seconds on a large frame); arrays report ``nbytes``; anything
    else reports ``sys.getsizeof``.
    """
    shape = getattr(value, "shape", None)
    shape_text = " x ".join(str(n) for n in shape) if isinstance(shape, tuple) else ""
    usage = getattr(value, "memory_usage", None)
    if callable(usage):
        try:
            total = usage(index=True, deep=False)
            return shape_text, int(getattr(total, "sum", lambda: total)())
        except (TypeError, ValueError):
            pass
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):  # numpy arrays, Arrow tables
        return shape_text, nbytes
    estimated = getattr(value, "estimated_size", None)
    if callable(estimated) and shape_text:  # a polars DataFrame (never a lazy one)
        with contextlib.suppress(TypeError, ValueError):
            return shape_text, int(estimated())
    return shape_text, sys.getsizeof(value)


def _human(nbytes: int) -> str:
    size = float(nbytes)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{nbytes} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


class ReleasedResult:
    """Stands in for a task run's result after :class:`DSTaskRunner` released it.

    ``repr`` names the task, its run id, the released value's type, shape and size.
    ``reloadable`` is true when the task was checkpointed: :meth:`load` then reads the
    frame back from its target. Any other use fails loudly, so a placeholder can never
    pass for data.
    """

    __slots__ = ("nbytes", "shape", "target", "task_name", "task_run_id", "type_name")

    def __init__(
        self,
        task_name: str,
        task_run_id: UUID,
        type_name: str,
        nbytes: int,
        shape: str = "",
        target: StoredTarget | None = None,
    ) -> None:
        self.task_name = task_name
        self.task_run_id = task_run_id
        self.type_name = type_name
        self.nbytes = nbytes
        self.shape = shape
        self.target = target

    @classmethod
    def of(
        cls, value: Any, task_name: str, task_run_id: UUID, target: StoredTarget | None
    ) -> ReleasedResult:
        """The placeholder describing ``value``, the result being released."""
        shape, nbytes = describe_size(value)
        return cls(task_name, task_run_id, type(value).__name__, nbytes, shape, target)

    @property
    def reloadable(self) -> bool:
        """Whether the released frame is stored somewhere it can be read back from."""
        return self.target is not None

    def load(self) -> Any:
        """Read the released frame back from its checkpoint target.

        Raises :class:`ResultReleasedError` when the task was not checkpointed, or when
        its target cannot be read any more (deleted since, for instance); the message
        names the task and the target.
        """
        if self.target is None:
            raise ResultReleasedError(self.explain())
        try:
            return self.target.load()
        except Exception as exc:
            raise ResultReleasedError(
                f"The result of task {self.task_name!r} (task run {self.task_run_id}) was "
                f"released from memory and cannot be read back from its checkpoint target "
                f"{self.target.location!r}: {type(exc).__name__}: {exc}. It was stored "
                f"there when the task ran; if it was removed since, run the flow again to "
                f"recompute it."
            ) from exc

    def explain(self) -> str:
        """Why the data is gone and how to keep it."""
        return (
            f"The result of task {self.task_name!r} (task run {self.task_run_id}) was "
            f"released by DSTaskRunner after every task that consumed it had finished, "
            f"and it is not checkpointed, so it cannot be read back. Submit every "
            f"consumer of this result before the earlier ones finish, or decorate "
            f"{self.task_name!r} with prefect_ds.checkpoint(...) so a released result is "
            f"reloaded from its target."
        )

    def __getattr__(self, name: str) -> NoReturn:
        # Only reached for attributes a ReleasedResult does not have, such as a
        # DataFrame's columns: say what happened instead of a bare AttributeError.
        if name.startswith("__") or name in ReleasedResult.__slots__:
            raise AttributeError(name)
        raise AttributeError(f"ReleasedResult has no attribute {name!r}. {self.explain()}")

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ResultReleasedError(f"A ReleasedResult was used as data. {self.explain()}")

    # Using the placeholder as a frame, an array, a number, a sequence or a truth value
    # fails with the reason, so it can never pass for data (``if flag.result():``).
    __getitem__ = __iter__ = __len__ = __array__ = __contains__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _refuse
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __pow__ = _refuse
    __rpow__ = __mod__ = __rmod__ = __matmul__ = __rmatmul__ = __neg__ = _refuse
    __pos__ = __abs__ = __invert__ = __and__ = __rand__ = __or__ = __ror__ = _refuse
    __xor__ = __rxor__ = __lshift__ = __rshift__ = __divmod__ = __rdivmod__ = _refuse
    __lt__ = __le__ = __gt__ = __ge__ = __eq__ = __ne__ = _refuse
    __bool__ = __int__ = __float__ = __complex__ = __index__ = __round__ = _refuse
    __setitem__ = __delitem__ = __reversed__ = __call__ = _refuse
    __iadd__ = __isub__ = __imul__ = __itruediv__ = _refuse
    # Comparison is refused, but identity still works: a placeholder can sit in a set or
    # be found in a dict by the runner that made it.
    __hash__ = object.__hash__

    def __repr__(self) -> str:
        shape = f" {self.shape}," if self.shape else ""
        where = ""
        if self.target is not None:
            where = f", reloadable from {redact(self.target.location)}"
        return (
            f"<ReleasedResult of task {self.task_name!r} (run {self.task_run_id}):"
            f" {self.type_name},{shape} {_human(self.nbytes)}{where}>"
        )
