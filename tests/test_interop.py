"""PyTorch interop: generator files in every supported reference layout load with no options (architecture, sizes
and scale from the tensor table) and match the reference PyTorch code within 1e-4 on a [0, 1] image, on TensorFlow
(here), JAX and PyTorch (one subprocess each, all variants); exports open in spandrel / BasicSR unchanged."""
import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import model
from model.convert.detect import detect
from model.convert.torch_export import export_torch, write_torch
from testing.reference import require_reference
from utils import UserError

torch = pytest.importorskip("torch")

TOL = 1e-4  # [0, 1] units
SIZE = 16
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def randomize(net, seed):
    """Weights that make every layer matter: kernels N(0, 1/fan_in), biases N(0, 0.1^2), PReLU slopes U(0, 0.5)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.ndim == 4:
                p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(p[0].numel()))
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            else:
                p.copy_(torch.rand(p.shape, generator=g) * 0.5)
    return net.eval()


def lr_image(seed=0):
    return np.random.default_rng(seed).random((SIZE, SIZE, 3)).astype(np.float32)


def torch_sr(net, x):
    with torch.no_grad():
        return net(torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))[0].numpy().transpose(1, 2, 0)


def keras_sr(m, x):
    return keras.ops.convert_to_numpy(m(x[None] * 255, training=False))[0] / 255


def _state(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _esrgan_old(state):
    """BasicSR RRDBNet keys -> xinntao/ESRGAN's RRDBNet_arch.py names (RRDB_trunk, trunk_conv, upconv, HRconv)."""
    names = {"conv_body": "trunk_conv", "conv_up1": "upconv1", "conv_up2": "upconv2", "conv_hr": "HRconv"}
    out = {}
    for k, v in state.items():
        k = re.sub(r"^body\.(\d+)\.rdb(\d)\.", r"RRDB_trunk.\1.RDB\2.", k)
        head, tail = k.rsplit(".", 1)
        out[f"{names.get(head, head)}.{tail}"] = v
    return out


def _edsr_official(state, num_block):
    """BasicSR EDSR keys -> EDSR-PyTorch's (head.0, body.N.body.0/2, body.B, tail.0.K, tail.1) plus its MeanShift
    convs at rgb_range 255, DIV2K mean, unit std (common.MeanShift)."""
    out = {}
    for k, v in state.items():
        for pattern, repl in ((r"conv_first\.", "head.0."), (r"body\.(\d+)\.conv1\.", r"body.\1.body.0."),
                              (r"body\.(\d+)\.conv2\.", r"body.\1.body.2."), (r"conv_after_body\.", f"body.{num_block}."),
                              (r"upsample\.", "tail.0."), (r"conv_last\.", "tail.1.")):
            if re.match(pattern, k):
                k = re.sub(pattern, repl, k)
                break
        out[k] = v
    mean = torch.tensor([0.4488, 0.4371, 0.4040]) * 255
    for name, sign in (("sub_mean", -1), ("add_mean", 1)):
        out[f"{name}.weight"] = torch.eye(3).view(3, 3, 1, 1)
        out[f"{name}.bias"] = sign * mean
    return out


def variants():
    """name -> (reference torch net, state dict as the file holds it, wrapper key, arch, scale, params)."""
    rrdb = require_reference("basicsr.archs.rrdbnet_arch").RRDBNet
    edsr = require_reference("basicsr.archs.edsr_arch").EDSR
    msr = require_reference("basicsr.archs.srresnet_arch").MSRResNet
    srvgg = require_reference("realesrgan.archs.srvgg_arch").SRVGGNetCompact
    spandrel = require_reference("spandrel")
    out = {}

    def add(name, net, arch, scale, params, wrap="params_ema", rename=None):
        state = _state(net)
        out[name] = (net, rename(state) if rename else state, wrap, arch, scale, params)

    tiny = {"num_feat": 8, "num_block": 2, "num_grow_ch": 4}
    rr = {"num_filters": 8, "num_res_blocks": 2, "growth_channels": 4}
    for s, label in ((4, "x4plus"), (2, "x2plus"), (1, "x1")):
        add(f"rrdbnet-{label}", randomize(rrdb(3, 3, scale=s, **tiny), s), "rrdbnet", s, rr,
            wrap="params" if s == 1 else "params_ema")
    add("rrdbnet-x4plus_anime_6B", randomize(rrdb(3, 3, scale=4, num_feat=8, num_block=6, num_grow_ch=4), 6),
        "rrdbnet", 4, {**rr, "num_res_blocks": 6}, wrap=None)
    # the old layout, with spandrel (which reads it itself) as the reference; spandrel's RRDB has growth 32
    old = _esrgan_old(_state(randomize(rrdb(3, 3, scale=4, num_feat=8, num_block=1, num_grow_ch=32), 7)))
    desc = spandrel.ModelLoader().load_from_state_dict(old)
    out["esrgan-old-x4"] = (desc.model.eval(), old, None, "rrdbnet", 4,
                            {"num_filters": 8, "num_res_blocks": 1, "growth_channels": 32})
    for s, nc, label in ((4, 4, "general-x4v3"), (4, 2, "animevideov3"), (2, 2, "x2")):
        add(f"srvgg-{label}", randomize(srvgg(3, 3, num_feat=8, num_conv=nc, upscale=s), 10 + s + nc),
            "srvgg-compact", s, {"num_filters": 8, "num_res_blocks": nc, "activation": "prelu"})
    for s in (2, 3, 4):
        net = randomize(edsr(3, 3, num_feat=8, num_block=2, upscale=s), 20 + s)
        add(f"edsr-basicsr-x{s}", net, "edsr", s, {"num_filters": 8, "num_res_blocks": 2})
        add(f"edsr-official-x{s}", net, "edsr", s, {"num_filters": 8, "num_res_blocks": 2}, wrap=None,
            rename=lambda st: _edsr_official(st, 2))
    full = randomize(edsr(3, 3, num_feat=256, num_block=1, upscale=2, res_scale=0.1), 30)
    add("edsr-full-x2", full, "edsr", 2, {"num_filters": 256, "num_res_blocks": 1, "res_scaling": 0.1}, wrap=None,
        rename=lambda st: _edsr_official(st, 1))
    for s in (2, 3, 4):
        add(f"msrresnet-x{s}", randomize(msr(3, 3, num_feat=8, num_block=2, upscale=s), 40 + s), "msrresnet", s,
            {"num_filters": 8, "num_res_blocks": 2})
    return out


@pytest.fixture(scope="module")
def reference_files(tmp_path_factory):
    """name -> (file, reference output, arch, scale, params); each variant saved as the reference tools do."""
    folder = tmp_path_factory.mktemp("interop")
    x = lr_image()
    files = {}
    for name, (net, state, wrap, arch, scale, params) in variants().items():
        path = folder / f"{name}.pth"
        torch.save({wrap: state} if wrap else state, path)
        files[name] = (path, torch_sr(net, x), arch, scale, params)
    return files


def _check(name, got, ref, backend):
    diff = float(np.abs(got - ref).max())
    print(f"interop {backend:10s} {name:26s} max |keras - torch| {diff:.2e}")
    assert got.shape == ref.shape
    assert np.abs(ref).max() > 0.3  # the weights do something
    assert diff < TOL, f"{name} on {backend}: {diff}"
    return diff


def test_every_variant_loads_with_no_options_and_matches_pytorch(reference_files):
    x = lr_image()
    for name, (path, ref, arch, scale, params) in reference_files.items():
        m = model.load_model(path)
        assert (m.arch, m.scale) == (arch, scale), name
        assert {k: v for k, v in m.params.items() if k != "pred_logvar"} == params, name
        _check(name, keras_sr(m, x), ref, "tensorflow")


_SCRIPT = """
import json, os, sys
import keras
import numpy as np
import model
from model.convert.torch_export import write_torch
x = np.load(sys.argv[1])
out = {}
for name, path in json.loads(sys.argv[2]).items():
    m = model.load_model(path)
    out[name] = keras.ops.convert_to_numpy(m(x[None] * 255, training=False))[0] / 255
    write_torch(m, os.path.join(os.path.dirname(sys.argv[3]), name + ".safetensors"))
np.savez(sys.argv[3], **out)
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_every_variant_matches_pytorch_on_other_backends(reference_files, backend, tmp_path):
    """Import on the backend, and export from it: the written tensors are the file's (under BasicSR's names)."""
    from model.convert.torch_pickle import read_state_dict

    np.save(tmp_path / "x.npy", lr_image())
    paths = {name: str(v[0]) for name, v in reference_files.items()}
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": REPO, "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path / "x.npy"), json.dumps(paths),
                          str(tmp_path / "out.npz")], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    got = np.load(tmp_path / "out.npz")
    for name, (path, ref, *_) in reference_files.items():
        _check(name, got[name], ref, backend)
        original = detect(read_state_dict(path))[3]
        exported = read_state_dict(tmp_path / f"{name}.safetensors")
        assert set(exported) == set(original), name
        for key, value in original.items():
            np.testing.assert_allclose(exported[key], value, rtol=1e-5, atol=1e-6, err_msg=f"{name} {key}")


def test_params_ema_is_preferred_over_params(tmp_path):
    srvgg = require_reference("realesrgan.archs.srvgg_arch").SRVGGNetCompact
    ema = randomize(srvgg(3, 3, num_feat=8, num_conv=1, upscale=2), 1)
    raw = randomize(srvgg(3, 3, num_feat=8, num_conv=1, upscale=2), 2)
    torch.save({"params": _state(raw), "params_ema": _state(ema)}, tmp_path / "both.pth")
    x = lr_image()
    got = keras_sr(model.load_model(tmp_path / "both.pth"), x)
    assert np.abs(got - torch_sr(ema, x)).max() < TOL
    assert np.abs(got - torch_sr(raw, x)).max() > 0.01


def test_unknown_tables_get_one_line_naming_what_was_recognised(tmp_path):
    table = {"conv_first.weight": np.zeros((8, 3, 3, 3), np.float32), "attn.0.qkv.weight": np.zeros((24, 8))}
    with pytest.raises(UserError, match=r"x.pth: not a known super-resolution network: recognised conv_first but "
                                         r"not 'attn.0.qkv.weight'") as e:
        detect(table, "x.pth")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="not a known super-resolution network: not 'a.weight'"):
        detect({"a.weight": np.zeros((3, 3, 3, 3))}, "y.pth")
    # a recognised architecture whose tensors do not fit it: the first key that does not
    edsr = require_reference("basicsr.archs.edsr_arch").EDSR
    state = _state(edsr(3, 3, num_feat=8, num_block=2, upscale=2))
    del state["body.1.conv2.weight"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(UserError, match=r"broken.pth: key 'body.1.conv2.weight' is missing .*EDSR x2"):
        model.load_model(tmp_path / "broken.pth")
    with pytest.raises(UserError, match=r"holds a x2 EDSR but --scale 4"):
        model.load_model(tmp_path / "broken.pth", scale=4)


def _keras_random(arch, scale, seed, **params):
    """A fresh SRModel with every weight random (biases and PReLU slopes too, so each export path is used)."""
    m = model.build_model(arch, scale, **params)
    rng = np.random.default_rng(seed)
    for w in m.weights:
        shape = tuple(w.shape)
        if len(shape) == 4:
            value = rng.normal(size=shape) / np.sqrt(np.prod(shape[:3]))
        elif "alpha" in w.path:
            value = rng.uniform(0, 0.5, shape)
        else:
            value = rng.normal(size=shape) * 0.1
        w.assign(value.astype(np.float32))
    return m


EXPORTS = {  # spandrel 0.4.2 opens RRDBNet (growth 32 only) and SRVGGNetCompact; EDSR and MSRResNet via BasicSR
    "rrdbnet-x4": ("rrdbnet", 4, {"num_filters": 16, "num_res_blocks": 1, "growth_channels": 32}),
    "rrdbnet-x2": ("rrdbnet", 2, {"num_filters": 16, "num_res_blocks": 1, "growth_channels": 32}),
    "srvgg-x4": ("srvgg-compact", 4, {"num_filters": 8, "num_res_blocks": 2}),
    "edsr-x3": ("edsr", 3, {"num_filters": 8, "num_res_blocks": 2}),
    "msrresnet-x4": ("msrresnet", 4, {"num_filters": 8, "num_res_blocks": 2}),
}


def _reference_from_export(arch, scale, params, path):
    """The PyTorch network the reference tools build from an exported file, with no options."""
    if arch in ("rrdbnet", "srvgg-compact"):
        spandrel = require_reference("spandrel")
        desc = spandrel.ModelLoader().load_from_file(str(path))
        assert desc.architecture.id == {"rrdbnet": "ESRGAN", "srvgg-compact": "Compact"}[arch]
        assert desc.scale == scale
        return desc.model.eval()
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, weights_only=True)["params_ema"]
    if arch == "edsr":
        net = require_reference("basicsr.archs.edsr_arch").EDSR(3, 3, num_feat=params["num_filters"],
                                                                num_block=params["num_res_blocks"], upscale=scale)
    else:
        net = require_reference("basicsr.archs.srresnet_arch").MSRResNet(
            3, 3, num_feat=params["num_filters"], num_block=params["num_res_blocks"], upscale=scale)
    net.load_state_dict(state, strict=True)
    return net.eval()


@pytest.mark.parametrize("ext", [".pth", ".safetensors"])
@pytest.mark.parametrize("name", list(EXPORTS))
def test_export_opens_in_the_reference_tools_and_matches(name, ext, tmp_path):
    arch, scale, params = EXPORTS[name]
    m = _keras_random(arch, scale, seed=len(name), **params)
    path = tmp_path / f"{name}{ext}"
    message = export_torch(m, path)
    assert "BasicSR's key layout" in message
    assert float(re.search(r"read back: max \|diff\| ([0-9.]+) grey levels", message).group(1)) < 0.01
    from model.convert.torch_pickle import read_state_dict

    found, found_scale, found_params, _ = detect(read_state_dict(path))
    assert (found, found_scale) == (arch, scale)
    x = lr_image(1)
    _check(f"export {name}{ext}", keras_sr(m, x), torch_sr(_reference_from_export(arch, scale, params, path), x),
           "torch-ref")


def test_export_refuses_what_has_no_reference_layout(tmp_path):
    with pytest.raises(UserError, match="wdsr-a has no PyTorch reference layout"):
        write_torch(model.build_model("wdsr-a", 2, num_filters=8, num_res_blocks=1), tmp_path / "w.pth")
    with pytest.raises(UserError, match="log-variance head"):
        write_torch(model.build_model("edsr", 2, num_filters=8, num_res_blocks=1, pred_logvar=True), tmp_path / "e.pth")
    with pytest.raises(UserError, match="a PyTorch export is written as"):
        write_torch(model.build_model("edsr", 2, num_filters=8, num_res_blocks=1), tmp_path / "e.onnx")
    assert not os.listdir(tmp_path)


def test_released_x4plus_exports_back_bit_identical(shared_dir, tmp_path):
    """RealESRGAN_x4plus.pth -> Keras (no options) -> .pth: the same keys in the same order, the same tensors."""
    from model.convert.torch_pickle import read_state_dict

    source = shared_dir / "weights" / "realesrgan-x4plus" / "RealESRGAN_x4plus.pth"
    if not source.is_file():
        pytest.skip(f"{source} not present")
    m = model.load_model(source)
    assert (m.arch, m.scale, m.params["num_res_blocks"], m.params["growth_channels"]) == ("rrdbnet", 4, 23, 32)
    write_torch(m, tmp_path / "back.pth")
    original, back = read_state_dict(source), read_state_dict(tmp_path / "back.pth")
    assert list(back) == list(original)
    assert all(np.array_equal(back[k], original[k]) for k in original)
