"""model/convert/torch_pickle.py: .pth (zip and legacy) and .safetensors read into numpy; no pickled code ever runs."""
import io
import os
import pickle
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from model.convert.torch_pickle import read_state_dict, read_torch_file
from utils import UserError


class _Evil:
    """Unpickling this calls os.system (what a malicious .pth would do)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _zip_pth(path, payload):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(payload, protocol=2))
        z.writestr("archive/version", "3\n")


def test_crafted_pickle_is_refused_and_nothing_runs(tmp_path, repo_root):
    marker = tmp_path / "pwned"
    zip_file, legacy_file = tmp_path / "evil.pth", tmp_path / "evil_legacy.pth"
    _zip_pth(zip_file, {"params_ema": {"conv_first.weight": _Evil(marker)}})
    with open(legacy_file, "wb") as f:
        for obj in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}, {"x": _Evil(marker)}):
            pickle.dump(obj, f, protocol=2)
    assert b"system" in zip_file.read_bytes() or b"system" in zipfile.ZipFile(zip_file).read("archive/data.pkl")
    for path in (zip_file, legacy_file):
        with pytest.raises(UserError, match=r"refused") as e:
            read_state_dict(path)
        assert "\n" not in str(e.value) and "system" in str(e.value)
    assert not marker.exists()
    # the CLI: one line, exit 2, nothing ran
    env = dict(os.environ, PYTHONPATH=str(repo_root))
    result = subprocess.run([sys.executable, str(repo_root / "convert.py"), "weights", "-i", str(zip_file), "-o",
                             str(tmp_path / "m.keras")], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "refused" in lines[0] and "Traceback" not in result.stderr
    assert not marker.exists() and not (tmp_path / "m.keras").exists()


@pytest.mark.parametrize("legacy", [False, True])
def test_torch_saved_tensors_read_exactly(tmp_path, legacy):
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    tensors = {
        "w": torch.randn(4, 3, 3, 3, generator=g),
        "half_view": torch.randn(7, generator=g).half()[2:],  # a view with a storage offset
        "transposed": torch.randn(3, 5, generator=g).t(),  # non-contiguous strides
        "bf16": torch.randn(6, generator=g).bfloat16(),
        "long": torch.arange(5),
        "double": torch.randn(2, 2, generator=g).double(),
        "param": torch.nn.Parameter(torch.ones(2)),
    }
    path = tmp_path / "t.pth"
    torch.save({"params": {k: v for k, v in tensors.items()}, "params_ema": {**tensors}, "iter": 7}, path,
               _use_new_zipfile_serialization=not legacy)
    got = read_state_dict(path)
    assert list(got) == list(tensors)
    for k, v in tensors.items():
        ref = v.detach().float().numpy() if v.dtype == torch.bfloat16 else v.detach().numpy()
        assert got[k].shape == ref.shape and got[k].dtype == ref.dtype, k
        np.testing.assert_array_equal(got[k], ref, err_msg=k)
    raw = read_torch_file(path)
    assert raw["iter"] == 7 and set(raw) == {"params", "params_ema", "iter"}
    # state_dict() layout (OrderedDict with _metadata, as torchvision's files) and a bare dict without params
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    torch.save(net.state_dict(), path, _use_new_zipfile_serialization=not legacy)
    got = read_state_dict(path)
    assert list(got) == list(net.state_dict())
    np.testing.assert_array_equal(got["0.weight"], net[0].weight.detach().numpy())
    assert got["1.num_batches_tracked"].dtype == np.int64


def test_params_ema_preferred_then_params(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "p.pth"
    torch.save({"params": {"a": torch.zeros(1)}, "params_ema": {"a": torch.ones(1)}}, path)
    assert read_state_dict(path)["a"][0] == 1.0
    torch.save({"params": {"a": torch.zeros(1)}}, path)
    assert read_state_dict(path)["a"][0] == 0.0


def test_safetensors(tmp_path):
    from safetensors.numpy import save_file

    tensors = {"conv.weight": np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32),
               "n": np.arange(6, dtype=np.int64).reshape(2, 3), "h": np.linspace(0, 1, 5).astype(np.float16)}
    save_file(tensors, str(tmp_path / "w.safetensors"))
    got = read_state_dict(tmp_path / "w.safetensors")
    assert set(got) == set(tensors)
    for k, v in tensors.items():
        np.testing.assert_array_equal(got[k], v)
        assert got[k].dtype == v.dtype
    # bfloat16 (no numpy dtype): hand-written file, values exactly representable
    values = np.array([1.0, -2.5, 0.15625], np.float32)
    raw = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    header = ('{"b": {"dtype": "BF16", "shape": [3], "data_offsets": [0, %d]}}' % len(raw)).encode()
    (tmp_path / "b.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + raw)
    np.testing.assert_array_equal(read_state_dict(tmp_path / "b.safetensors")["b"], values)


def test_bad_files_are_user_errors(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a pickle at all")
    (tmp_path / "junk.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
    (tmp_path / "empty.pth").write_bytes(b"")
    notorch = tmp_path / "other.pth"
    with zipfile.ZipFile(notorch, "w") as z:
        z.writestr("readme.txt", "hello")
    plain = tmp_path / "plain.pth"
    with open(plain, "wb") as f:
        pickle.dump([1, 2, 3], f)
    for name, pattern in [("junk.pth", "junk.pth"), ("junk.safetensors", "not a safetensors"),
                          ("empty.pth", "empty.pth"), ("other.pth", "no data.pkl"), ("plain.pth", "plain.pth"),
                          ("missing.pth", "not found")]:
        with pytest.raises(UserError, match=pattern) as e:
            read_state_dict(tmp_path / name)
        assert "\n" not in str(e.value)
    buf = io.BytesIO()
    pickle.dump({"a": 1}, buf)
    _zip_pth(tmp_path / "notensors.pth", {"a": 1})
    with pytest.raises(UserError, match="no tensors"):
        read_state_dict(tmp_path / "notensors.pth")


def test_real_esrgan_file_reads_without_torch(shared_dir, repo_root):
    """The shipped x4plus file: 702 float32 tensors, 16,697,987 values, read in a process where torch is blocked."""
    path = shared_dir / "weights" / "realesrgan-x4plus" / "RealESRGAN_x4plus.pth"
    script = (
        "import sys; sys.modules['torch'] = None\n"  # any `import torch` now fails
        "import utils\n"
        "import importlib.util as u\n"
        "spec = u.spec_from_file_location('tw', sys.argv[1] + '/model/convert/torch_pickle.py'); tw = u.module_from_spec(spec)\n"
        "spec.loader.exec_module(tw)\n"
        "sd = tw.read_state_dict(sys.argv[2])\n"
        "print(len(sd), sum(v.size for v in sd.values()), {str(v.dtype) for v in sd.values()})\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(repo_root), str(path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[:2] == ["702", "16697987"] and "float32" in result.stdout


def test_out_of_bounds_strides_are_refused(tmp_path):
    """A forged tensor header (negative stride, or past the storage end) must not read outside the buffer."""
    torch = pytest.importorskip("torch")
    import collections

    storage = object()

    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", 4) if obj is storage else None

    class _Forged:
        def __init__(self, size, stride):
            self.size, self.stride = size, stride

        def __reduce__(self):
            return torch._utils._rebuild_tensor_v2, (storage, 0, self.size, self.stride, False, collections.OrderedDict())

    for size, stride, pattern in [((2, 2), (-1, 1), "negative"), ((4, 4), (4, 1), "past the end")]:
        buf = io.BytesIO()
        _Pickler(buf, protocol=2).dump({"w": _Forged(size, stride)})
        path = tmp_path / "forged.pth"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", buf.getvalue())
            z.writestr("archive/data/0", np.arange(4, dtype="<f4").tobytes())
        with pytest.raises(UserError, match=pattern):
            read_state_dict(path)
