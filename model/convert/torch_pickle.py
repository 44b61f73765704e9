"""Read PyTorch `.pth` / `.pt` and `.safetensors` weight files into numpy WITHOUT executing any pickled code.

A `.pth` is a Python pickle, and unpickling runs whatever callables the file names (os.system included). This
reader unpickles with a whitelist: only the globals torch.save writes for tensors and state dicts
(`torch._utils._rebuild_tensor(_v2)`, `_rebuild_parameter`, `torch.<Type>Storage`, `collections.OrderedDict`) are
resolved, each to a harmless stand-in defined here; any other global is refused with a UserError before anything
is called. Storages are read from the file itself into numpy arrays, so PyTorch need not be installed.

Both torch.save layouts are read: the zip archive (PyTorch >= 1.6: `<name>/data.pkl` + `<name>/data/<key>`) and
the legacy stream (magic number, protocol, sys info, the pickle, storage keys, then raw storages), which old
files such as ESRGAN's 2018 models and torchvision's vgg19-dcbb9e9d.pth use.

    read_state_dict(path) -> {key: np.ndarray}   (params_ema, else params, else state_dict, else the dict)
    read_torch_file(path) -> the raw unpickled object, tensors as np.ndarray
"""
import collections
import io
import json
import os
import pickle
import struct
import zipfile

import numpy as np

from utils import UserError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": "bfloat16", "I64": np.int64, "I32": np.int32,
    "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}
STATE_DICT_KEYS = ("params_ema", "params", "state_dict")  # BasicSR EMA weights first, as its loaders do


class _StorageType:
    """Stand-in for torch.FloatStorage & co.: only carries the element type."""

    def __init__(self, name):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]

    @property
    def itemsize(self):
        return 2 if self.dtype == "bfloat16" else np.dtype(self.dtype).itemsize


class _Storage:
    """A storage whose bytes are filled in from the file (zip entry, or later in a legacy stream)."""

    def __init__(self, storage_type, numel):
        self.type = storage_type
        self.numel = int(numel)
        self.data = None  # 1-D numpy array once read
        self.view = None  # (root storage, element offset, size) for legacy storage views

    def array(self):
        if self.view is not None:
            root, offset, size = self.view
            return root.array()[offset: offset + size]
        if self.data is None:
            raise UserError("a tensor's storage is missing from the file")
        return self.data


class _Tensor:
    """Placeholder for a tensor, materialised once every storage has been read."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, int(offset), tuple(size), tuple(stride)

    def numpy(self):
        flat = self.storage.array()
        if self.offset < 0 or any(int(s) < 0 for s in self.stride) or any(int(n) < 0 for n in self.size) \
                or len(self.size) != len(self.stride):
            raise UserError("a tensor has a negative offset, size or stride")  # as_strided must stay in bounds
        need = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride)) + 1 if all(self.size) else 0
        if need > flat.size:
            raise UserError("a tensor reaches past the end of its storage")
        if not all(self.size):
            out = np.zeros(self.size, dtype=flat.dtype)
        else:
            item = flat.dtype.itemsize
            out = np.lib.stride_tricks.as_strided(flat[self.offset:], shape=self.size,
                                                  strides=[s * item for s in self.stride]).copy()
        if self.storage.type.dtype == "bfloat16":  # no numpy bfloat16: widen the 16 bits to float32
            out = (out.astype(np.uint32) << 16).view(np.float32)
        return out


def _rebuild_tensor(storage, storage_offset, size, stride, *rest):
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *rest):
    return data


# (module, name) -> the harmless object that stands for it. Nothing else can be named by the pickle.
_ALLOWED = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path, storages, zip_reader=None):
        super().__init__(file, encoding="latin1")  # Python 2 era (legacy) pickles hold byte strings
        self.path, self.storages, self.zip_reader = path, storages, zip_reader

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            found = _ALLOWED[(module, name)]
            # a fresh stand-in per use: a pickle's BUILD opcode could otherwise alter the shared one
            return _StorageType(found.name) if isinstance(found, _StorageType) else found
        raise UserError(f"{self.path} is not a plain weights file: its pickle calls {module}.{name}, which is refused "
                        "(a .pth can run code when unpickled; only tensors and dicts are read)")

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage" or len(pid) < 5:
            raise UserError(f"{self.path}: unsupported object reference in the pickle ({str(pid)[:60]})")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise UserError(f"{self.path}: unsupported storage type in the pickle")
        key = str(key)
        view = pid[5] if len(pid) > 5 else None
        if key not in self.storages:
            storage = _Storage(storage_type, numel)
            if self.zip_reader is not None:
                raw = self.zip_reader(key)
                dtype = np.uint16 if storage_type.dtype == "bfloat16" else storage_type.dtype
                storage.data = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
            self.storages[key] = storage
        root = self.storages[key]
        if view is not None:  # legacy: (view key, element offset, size) into the root storage
            view_key, offset, size = view
            if view_key not in self.storages:
                v = _Storage(storage_type, size)
                v.view = (root, int(offset), int(size))
                self.storages[view_key] = v
            return self.storages[view_key]
        return root


def _materialise(obj):
    if isinstance(obj, _Tensor):
        return obj.numpy()
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, _materialise(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _materialise(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def _load_zip(path):
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
        if not pkl:
            raise UserError(f"{path} is a zip archive but not a PyTorch file (no data.pkl)")
        prefix = pkl[0][: -len("data.pkl")]
        byteorder = prefix + "byteorder"
        if byteorder in names and z.read(byteorder).strip() not in (b"little", b""):
            raise UserError(f"{path} stores big-endian tensors, which are not supported")

        def read(key):
            try:
                return z.read(f"{prefix}data/{key}")
            except KeyError:
                raise UserError(f"{path}: storage {key} is missing from the archive") from None

        storages = {}
        obj = _RestrictedUnpickler(io.BytesIO(z.read(pkl[0])), path, storages, read).load()
        return _materialise(obj)


def _load_legacy(path):
    with open(path, "rb") as f:
        storages = {}

        def unpickle():
            return _RestrictedUnpickler(f, path, storages).load()

        magic = unpickle()
        if magic != LEGACY_MAGIC:
            raise UserError(f"{path} is a pickle but not a PyTorch weights file")
        unpickle()  # protocol version
        unpickle()  # sys info (endianness, type sizes)
        obj = unpickle()
        keys = unpickle()
        for key in keys:
            storage = storages.get(str(key))
            if storage is None:
                raise UserError(f"{path}: storage {key} is listed but never used")
            header = f.read(8)
            if len(header) != 8:
                raise UserError(f"{path} is truncated")
            (numel,) = struct.unpack("<q", header)
            size = numel * storage.type.itemsize
            raw = f.read(size)
            if len(raw) != size:
                raise UserError(f"{path} is truncated")
            dtype = np.uint16 if storage.type.dtype == "bfloat16" else storage.type.dtype
            storage.data = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
        return _materialise(obj)


def read_safetensors(path):
    """{key: np.ndarray} of a .safetensors file (header parsed here, so bfloat16 works without torch)."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise UserError(f"{path} is not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", head)
        if n > 100_000_000:
            raise UserError(f"{path} is not a safetensors file (bad header length)")
        try:
            header = json.loads(f.read(n))
        except ValueError:
            raise UserError(f"{path} is not a safetensors file (header is not JSON)") from None
        data = f.read()
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        dtype = SAFETENSORS_DTYPES.get(info.get("dtype"))
        if dtype is None:
            raise UserError(f"{path}: tensor {key} has unsupported dtype {info.get('dtype')}")
        start, end = info["data_offsets"]
        raw = data[start:end]
        if len(raw) != end - start:
            raise UserError(f"{path} is truncated (tensor {key})")
        arr = np.frombuffer(raw, dtype=np.dtype(np.uint16 if dtype == "bfloat16" else dtype).newbyteorder("<"))
        if dtype == "bfloat16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[key] = arr.reshape(info["shape"]).copy()
    return out


def read_torch_file(path):
    """The object a torch.save file holds, with tensors as numpy arrays; no pickled code is run."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"weights file {path} not found")
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        return _load_legacy(path)
    except UserError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            zipfile.BadZipFile, struct.error) as e:
        raise UserError(f"cannot read {path} as a PyTorch weights file: {type(e).__name__}: "
                        f"{str(e).splitlines()[0][:120] if str(e) else ''}") from None


def is_safetensors(path):
    """True when the file starts as a safetensors file does: an 8-byte little-endian header length, then '{'
    (a torch.save file starts with a zip or pickle signature). The content decides, not the name."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and 0 < struct.unpack("<Q", head[:8])[0] <= 100_000_000 and head[8:] == b"{"


def read_state_dict(path):
    """{key: np.ndarray} from a .pth/.pt (the `params_ema`, else `params`, else `state_dict` entry, else the whole
    dict) or a .safetensors file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"weights file {path} not found")
    if is_safetensors(path):
        return read_safetensors(path)
    obj = read_torch_file(path)
    if not isinstance(obj, dict):
        raise UserError(f"{path} holds a {type(obj).__name__}, not a state dict")
    for key in STATE_DICT_KEYS:
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    tensors = {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}
    if not tensors:
        raise UserError(f"{path} holds no tensors (keys: {', '.join(map(str, list(obj)[:5]))})")
    return tensors
