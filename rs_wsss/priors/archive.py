"""Reading the tensors of a weights file without running any code stored in it.

Layouts: safetensors (header JSON, then raw bytes); ``torch.save`` zip archives (``.bin``/``.pth``), also inside a
release zip holding one weights file (SkyScript's ``epoch_20.pt``: extracted to a temporary folder); TorchScript
archives (OpenAI's ``ViT-B-16.pt``, which ``torch.load(weights_only=True)`` refuses); legacy non-zip ``torch.save``
pickles (through ``torch.load(weights_only=True)``). Zip archives are unpickled by :class:`_Unpickler`, which
knows a fixed list of globals (storage types, ``_rebuild_tensor_v2``, ``OrderedDict``, TorchScript's list builders)
and turns every ``__torch__.*`` class into an inert attribute bag: nothing from the file is imported or called.
TorchScript code (``code/``) and ``__setstate__`` methods are never compiled or run, unlike ``torch.jit.load``.

:func:`read_shapes` reads only the header (safetensors) or ``data.pkl`` (zip), so a file for the wrong architecture
is recognised in milliseconds, before torch (or a ViT) is built.
"""

from __future__ import annotations

import json
import pickle
import shutil
import struct
import tempfile
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DAMAGED_FILE_ERRORS, RsWsssError

# storage class name (torch.save / TorchScript pickles) → (torch dtype name, bytes per element)
STORAGES = {
    "FloatStorage": ("float32", 4), "HalfStorage": ("float16", 2), "BFloat16Storage": ("bfloat16", 2),
    "DoubleStorage": ("float64", 8), "LongStorage": ("int64", 8), "IntStorage": ("int32", 4),
    "ShortStorage": ("int16", 2), "CharStorage": ("int8", 1), "ByteStorage": ("uint8", 1), "BoolStorage": ("bool", 1),
}
SAFETENSORS_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64", "I64": "int64",
                      "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


@dataclass(frozen=True)
class TensorRef:
    """A tensor named in a pickle, not yet read: where its bytes are and how to view them."""

    storage: str  # key of the storage record in the archive's data/ folder
    dtype: str
    offset: int  # in elements
    shape: tuple[int, ...]
    stride: tuple[int, ...]


class _ScriptObject:
    """Stand-in for a TorchScript class instance (a module): only its attributes are kept."""

    def __init__(self, *args: Any) -> None:
        self.attrs: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        self.attrs = dict(state) if isinstance(state, dict) else {}


def _rebuild_tensor(storage: tuple[str, str], offset: int, size: tuple, stride: tuple, *rest: Any) -> TensorRef:
    return TensorRef(storage[0], storage[1], int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _first(x: Any, *rest: Any) -> Any:  # _rebuild_parameter(data, requires_grad, hooks) → data
    return x


def _as_list(items: Any, *rest: Any) -> list:  # torch.jit._pickle.build_intlist(list) etc.
    return list(items) if isinstance(items, (list, tuple)) else []


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _first,
    ("torch._utils", "_rebuild_parameter_with_state"): _first,
    ("collections", "OrderedDict"): OrderedDict,
    **{("torch.jit._pickle", f"build_{k}list"): _as_list for k in ("int", "double", "bool", "tensor")},
    ("torch.jit._pickle", "restore_type_tag"): _first,
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("__torch__"):
            return _ScriptObject
        if module == "torch" and name in STORAGES:
            return name  # a marker; persistent_load pairs it with the record key
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"refers to {module}.{name}, which a weights file does not need")

    def persistent_load(self, pid: Any) -> tuple[str, str]:
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage" and pid[1] in STORAGES):
            raise pickle.UnpicklingError(f"unsupported storage record {pid!r:.60}")
        return str(pid[2]), STORAGES[pid[1]][0]


def _flatten(obj: Any, prefix: str, out: dict[str, Any], depth: int = 0) -> None:
    """Module trees (TorchScript) and nested dicts (``{"state_dict": …}``) → dotted names of tensors."""
    if depth > 64:
        return
    if isinstance(obj, _ScriptObject):
        obj = obj.attrs
    if isinstance(obj, TensorRef):
        out[prefix.rstrip(".")] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, str):
                _flatten(v, f"{prefix}{k}.", out, depth + 1)


def _zip_pickle(zf: zipfile.ZipFile) -> tuple[str, dict[str, TensorRef], bool]:
    """(folder prefix, flattened tensors, is TorchScript) of a torch zip archive."""
    names = zf.namelist()
    pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pkl) != 1:
        raise RsWsssError("a zip file without a torch data.pkl")
    root = pkl[0][: -len("data.pkl")]
    scripted = any(n.startswith(root + "code/") for n in names) or root + "constants.pkl" in names
    with zf.open(pkl[0]) as fh:
        obj = _Unpickler(fh).load()
    out: dict[str, TensorRef] = {}
    _flatten(obj, "", out)
    return root, out, scripted


def kind(path: Path) -> str:
    """'safetensors', 'zip' (torch.save or TorchScript) or 'pickle' (legacy torch.save), from the first bytes."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < 100_000_000:
        return "safetensors"
    if head[:1] == b"\x80" or head[:2] == b"\x8a\x0a":  # a pickle protocol opcode (legacy torch.save magic)
        return "pickle"
    raise RsWsssError(f"{path} is not a weights file (not safetensors, a torch archive or a torch pickle)")


WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


@contextmanager
def unzipped(path: Path) -> Iterator[Path]:
    """``path`` itself, or for a release zip holding one weights file, that file extracted to a temporary folder
    (removed afterwards). A torch archive is a zip too: one with ``data.pkl`` one folder down is used as it is."""
    if kind(path) != "zip":
        yield path
        return
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        if any(n.endswith("data.pkl") and n.count("/") == 1 for n in names):
            inner = None
        else:
            inner = [n for n in names if n.endswith(WEIGHT_SUFFIXES) and not n.startswith("__MACOSX/")]
            if len(inner) != 1:
                found = ", ".join(inner[:4]) if inner else "none"
                raise RsWsssError(f"{path} is a zip that should hold one weights file ({', '.join(WEIGHT_SUFFIXES)}), "
                                  f"found {found}; unzip the one you mean and pass it")
        if inner is None:
            yield path
            return
        with tempfile.TemporaryDirectory(prefix="rs-wsss-unzip-") as folder:
            target = Path(folder) / Path(inner[0]).name
            with zf.open(inner[0]) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 22)
            yield target


def read_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Tensor name → shape, reading as little of the file as possible (no tensor data, no torch for zip/safetensors)."""
    path = Path(path)
    try:
        with unzipped(path) as inner:
            return _read_shapes(inner)
    except RsWsssError:
        raise
    except DAMAGED_FILE_ERRORS as exc:
        raise RsWsssError(f"{path} is not a readable weights file ({type(exc).__name__}: {str(exc)[:100]})") from None


def _read_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    k = kind(path)
    if k == "safetensors":
        with open(path, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            header = json.loads(fh.read(n))
        return {name: tuple(v["shape"]) for name, v in header.items() if name != "__metadata__"}
    if k == "zip":
        with zipfile.ZipFile(path) as zf:
            return {name: ref.shape for name, ref in _zip_pickle(zf)[1].items()}
    return {name: tuple(t.shape) for name, t in read_tensors(path).items()}


def read_tensors(path: str | Path, names: set[str] | None = None) -> dict[str, Any]:
    """Tensor name → torch.Tensor (CPU, the file's dtypes); with ``names``, those tensors only (the others' data is
    not read from a safetensors file or a torch zip archive).

    Raises:
        RsWsssError: not a weights file, or a damaged one (truncated, bytes changed), named in one line.
    """
    from safetensors import SafetensorError

    damaged: tuple[type[BaseException], ...] = (*DAMAGED_FILE_ERRORS, SafetensorError)
    try:
        with unzipped(Path(path)) as inner:
            return _read_tensors(inner, names)
    except RsWsssError:
        raise
    except damaged as exc:
        raise RsWsssError(f"{path} is not a readable weights file ({type(exc).__name__}: {str(exc)[:100]})") from None


def _read_tensors(path: Path, names: set[str] | None) -> dict[str, Any]:
    import torch

    k = kind(path)
    if k == "safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            return {n: fh.get_tensor(n) for n in fh.keys() if names is None or n in names}  # noqa: SIM118
    if k == "pickle":
        obj = torch.load(path, map_location="cpu", weights_only=True)
        flat: dict[str, Any] = {}
        _flatten_tensors(obj, "", flat)
        return flat if names is None else {n: t for n, t in flat.items() if n in names}
    with zipfile.ZipFile(path) as zf:
        root, refs, _ = _zip_pickle(zf)
        buffers: dict[str, Any] = {}
        out = {}
        for name, ref in refs.items():
            if names is not None and name not in names:
                continue
            if ref.storage not in buffers:
                raw = bytearray(zf.read(f"{root}data/{ref.storage}"))
                buffers[ref.storage] = torch.frombuffer(raw, dtype=getattr(torch, ref.dtype)) if raw else (
                    torch.empty(0, dtype=getattr(torch, ref.dtype)))
            out[name] = buffers[ref.storage].as_strided(ref.shape, ref.stride, ref.offset)
        return out


def _flatten_tensors(obj: Any, prefix: str, out: dict[str, Any]) -> None:
    import torch

    if isinstance(obj, torch.Tensor):
        out[prefix.rstrip(".")] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, str):
                _flatten_tensors(v, f"{prefix}{k}.", out)
