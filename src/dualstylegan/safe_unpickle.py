"""Reading the pickle of an official ``*_code.npy`` bank without running it and without trusting its sizes.

``np.save`` of a dict (the reference's ``destylize.py`` / ``refine_exstyle.py``) pickles a 0-d object array:
``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')`` rebuilt by ``ndarray.__setstate__((1, (), dtype('O'),
False, [dict]))``, each code again a ``_reconstruct`` + ``__setstate__`` with its raw float bytes. ``np.load``
executes that. Here nothing from numpy is called while unpickling:

* the four numpy globals resolve to inert stand-ins that only record their arguments and state;
* the unpickler (Python's pure-Python one, so that each opcode can be counted) stops after
  :data:`~dualstylegan.limits.MAX_PICKLE_NODES` opcodes, refuses to fetch a container from the memo a second time
  (nested lists that all reference one list expand exponentially once walked; numpy's own pickles only reuse
  globals, dtypes, strings and flat tuples), and reads from an in-memory copy of the file, so a length field
  cannot make it allocate more than the file holds;
* the result is then read as exactly that structure: a dict of names to float arrays whose raw bytes match their
  declared shape, copied with ``np.frombuffer``.
"""
from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

from .limits import MAX_PICKLE_NODES, Refused

_MULTIARRAY = ("numpy.core.multiarray", "numpy._core.multiarray")
_DTYPES = {f"{k}{n}" for k in "biuf" for n in (1, 2, 4, 8)} | {"O4", "O8"}  # plain numbers and objects
_BYTE_ORDERS = {"<", ">", "|", "="}
_LARGEST_CODE = 1 << 24  # elements of one code: an official code has 18·512


class ForbiddenGlobal(pickle.UnpicklingError):
    """The pickle names a global outside numpy's array-rebuilding four (it asks to run code)."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class _Stub:
    """A recorded call of an allowed global and the state ``BUILD`` gave it; nothing is executed."""

    kind = "object"
    args: tuple = ()
    state: Any = None

    def __init__(self, *args: Any):
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _Array(_Stub):
    kind = "array"


class _Dtype(_Stub):
    kind = "dtype"


class _Scalar(_Stub):
    kind = "numpy scalar"


class _NdarrayType:
    """Stands for ``numpy.ndarray`` as the first argument of ``_reconstruct``."""


_GLOBALS = {
    **{(m, "_reconstruct"): _Array for m in _MULTIARRAY},
    **{(m, "scalar"): _Scalar for m in _MULTIARRAY},
    ("numpy", "ndarray"): _NdarrayType,
    ("numpy", "dtype"): _Dtype,
}
_SHAREABLE = (str, bytes, int, float, bool, type(None), _Dtype, type)


def _flat(obj: Any) -> bool:
    """Atoms, and tuples of atoms, may be fetched from the memo repeatedly: they cannot amplify a walk."""
    return isinstance(obj, _SHAREABLE) or (isinstance(obj, tuple) and all(isinstance(x, _SHAREABLE) for x in obj))


class _BudgetUnpickler(pickle._Unpickler):  # noqa: SLF001 - the pure-Python unpickler exposes its dispatch table
    def __init__(self, data: bytes):
        super().__init__(io.BytesIO(data))
        self.ops = 0

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _GLOBALS[(module, name)]
        except KeyError:
            raise ForbiddenGlobal(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def _counted(op):
    def run(self):
        self.ops += 1
        if self.ops > MAX_PICKLE_NODES:
            raise Refused(f"its pickle has more than {MAX_PICKLE_NODES} operations")
        return op(self)
    return run


def _memo_get(op):
    def run(self):
        op(self)
        if not _flat(self.stack[-1]):
            raise Refused(f"its pickle reuses a {type(self.stack[-1]).__name__} (shared references are not allowed "
                          "in a code bank)")
    return run


_BudgetUnpickler.dispatch = {code: _counted(op) for code, op in pickle._Unpickler.dispatch.items()}  # noqa: SLF001
for _op in (pickle.GET, pickle.BINGET, pickle.LONG_BINGET, pickle.DUP):
    _BudgetUnpickler.dispatch[_op[0]] = _counted(_memo_get(pickle._Unpickler.dispatch[_op[0]]))  # noqa: SLF001


# ------------------------------------------------------------------------------------------- reading the result
def _dtype(stub: Any) -> np.dtype:
    if not isinstance(stub, _Dtype) or not stub.args or stub.args[0] not in _DTYPES:
        name = stub.args[0] if isinstance(stub, _Dtype) and stub.args else _describe(stub)
        raise Refused(f"it declares an array type {name!r} (a code bank holds float arrays)")
    dtype = np.dtype(stub.args[0])
    state = stub.state
    order = state[1] if isinstance(state, tuple) and len(state) > 1 else "|"
    if order not in _BYTE_ORDERS:
        raise Refused(f"it declares the byte order {order!r}")
    return dtype.newbyteorder(order) if order in "<>" else dtype


def _describe(obj: Any) -> str:
    return obj.kind if isinstance(obj, _Stub) else type(obj).__name__


def _array_state(stub: _Array) -> tuple[tuple[int, ...], np.dtype, bool, Any]:
    state = stub.state
    if len(stub.args) != 3 or stub.args[0] is not _NdarrayType or not isinstance(state, tuple) or len(state) != 5:
        raise Refused("it holds an array that numpy's np.save did not write")
    _, shape, dtype, fortran, data = state
    if not isinstance(shape, tuple) or not all(type(n) is int and 0 <= n <= _LARGEST_CODE for n in shape):
        raise Refused(f"it declares an array of shape {shape!r}")
    return shape, _dtype(dtype), bool(fortran), data


def array(stub: Any, name: str) -> np.ndarray:
    """The float array a ``_reconstruct`` stub stands for, copied from its raw bytes (sizes checked first)."""
    if not isinstance(stub, _Array):
        raise Refused(f"the code of {name!r} is a {_describe(stub)}, not an array")
    shape, dtype, fortran, data = _array_state(stub)
    if dtype.kind != "f":
        raise Refused(f"the code of {name!r} has dtype {dtype}, not a float type")
    if isinstance(data, str):  # protocol-2 pickles carry the bytes as a latin-1 str
        data = data.encode("latin-1")
    if not isinstance(data, (bytes, bytearray)) or len(data) != int(np.prod(shape, dtype=object)) * dtype.itemsize:
        raise Refused(f"the code of {name!r} declares shape {shape} but holds {_size_of(data)}")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C").copy()


def _size_of(data: Any) -> str:
    return f"{len(data)} bytes" if isinstance(data, (bytes, bytearray, str)) else f"a {type(data).__name__}"


def root_object(stub: Any) -> Any:
    """What the 0-d object array at the top of an ``np.save`` pickle holds (the dict of codes)."""
    if not isinstance(stub, _Array):
        return stub
    shape, dtype, _, items = _array_state(stub)
    if dtype.kind != "O" or shape != () or not isinstance(items, list) or len(items) != 1:
        raise Refused("its pickle is not a single object saved with np.save")
    return items[0]


def load(data: bytes) -> Any:
    """Unpickle ``data`` (the bytes after the .npy header) within the budget; the top object, stubs unresolved
    (use :func:`root_object` and :func:`array`)."""
    return _BudgetUnpickler(data).load()


__all__ = ["ForbiddenGlobal", "array", "load", "root_object"]
