"""The project's Real-ESRGAN / Real-ESRNet training step against the reference code, step for step.

Both sides start from the same G (RealESRGAN_x4plus.pth, or with --small a random reduced RRDBNet written as a
.pth in the reference layout), the same UNet-SN D (random, a .pth in the reference layout), the same VGG19 (random,
torchvision layout) and the same paired batches (a crop of a real image and its MATLAB-bicubic x1/4; the batches
train.py's loader draws from that one-image dataset, flips and rotations included). Then 3 iterations of
`realesrgan.models.RealESRGANModel.optimize_parameters` (built on the CPU from a minimal opt dict) and of the
project's GAN step (`realesrgan-x4` settings, --no-ema), and the same for the pixel-only step (RealESRNetModel vs
`realesrnet-x4`). Compared: every step's losses (relative difference), each network's update on probe inputs
that were not trained on ((f_k(x) - f_0(x)) cosine and norm ratio after 1 and 3 steps), and the cosine of the
weight updates w3 - w0. The project runs twice: the library step (training.backend, interleaved with the
reference and timed: first and warm step) and train.py on the command line (--cli).

    python benchmarks/reference_step.py --cli realesrgan --speed-steps 4   # full RealESRGAN_x4plus, batch 1, LR 32
    python benchmarks/reference_step.py --small                        # the reduced nets tests/test_reference_step.py uses

Needs the reference packages (requirements-reference.txt). This module is the comparison itself (shared by
benchmarks/reference_step.py, which prints its JSON report, and tests/test_reference_step.py).
"""
import argparse
import contextlib
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from utils import UserError  # noqa: E402

SHARED = os.path.join(os.path.dirname(ROOT), "shared")
X4PLUS = os.path.join(SHARED, "weights", "realesrgan-x4plus", "RealESRGAN_x4plus.pth")
IMAGE = os.path.join(SHARED, "datasets", "Set14", "HR", "baboon.png")
FULL = {"g": (64, 23, 32), "d": 64}
SMALL = {"g": (8, 1, 4), "d": 8}
LAYER_WEIGHTS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
# the reference's loss_dict names -> the project's logged terms (times the weight the reference applies inside)
GAN_TERMS = {"l_g_pix": ("l1", 1.0), "l_g_percep": ("perceptual", 1.0), "l_g_gan": ("gan", 0.1),
             "l_d_real": ("d_loss_real", 1.0), "l_d_fake": ("d_loss_fake", 1.0)}
NET_TERMS = {"l_pix": ("l1", 1.0)}


# ------------------------------------------------------------------------------------------------ inputs
def _torch():
    from testing.reference import import_reference

    for name in ("realesrgan.models.realesrgan_model", "realesrgan.models.realesrnet_model",
                 "basicsr.archs.rrdbnet_arch", "basicsr.archs.discriminator_arch"):
        if import_reference(name) is None:
            raise UserError(f"the reference package of {name} is not installed: "
                            f"pip install --no-deps -r requirements-reference.txt")
    import torch

    return torch


def _source_image():
    """A real photo (Set14 baboon from ../shared), or a smooth random texture without ../shared."""
    if os.path.isfile(IMAGE):
        from imaging.io import read_image

        return read_image(IMAGE)
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (40, 40, 3)).astype(np.float64)
    from imaging.resize import imresize

    return np.clip(imresize(small, output_shape=(320, 320)), 0, 255).round().astype(np.uint8)


def write_inputs(workdir, small, lr_size):
    """The shared starting point: G, D and VGG .pth files, the one-image paired dataset, probe crops."""
    torch = _torch()
    from basicsr.archs.discriminator_arch import UNetDiscriminatorSN
    from basicsr.archs.rrdbnet_arch import RRDBNet
    from torchvision.models.vgg import cfgs, make_layers

    from imaging.io import write_image
    from imaging.resize import imresize

    sizes = SMALL if small else FULL
    paths = {k: os.path.join(workdir, f) for k, f in
             (("g", "g.pth"), ("d", "d.pth"), ("vgg", "vgg19.pth"), ("data", "data"))}
    torch.manual_seed(0)
    if small or not os.path.isfile(X4PLUS):
        if not small:
            raise UserError(f"{X4PLUS} not found: pass --small, or put RealESRGAN_x4plus.pth there")
        nf, nb, gc = sizes["g"]
        g = RRDBNet(3, 3, num_feat=nf, num_block=nb, num_grow_ch=gc, scale=4)
        with torch.no_grad():  # BasicSR's init zeroes every bias: random ones keep the weight matching unambiguous
            for name, p in g.named_parameters():
                if name.endswith("bias"):
                    p.uniform_(-0.01, 0.01)
        torch.save({"params_ema": g.state_dict()}, paths["g"])
    else:
        paths["g"] = X4PLUS
    d = UNetDiscriminatorSN(3, num_feat=sizes["d"])
    with torch.no_grad():  # converge the random u, v (training-mode passes of torch's spectral_norm): from random
        for _ in range(20):  # ones sigma is far off and D's outputs are ~1e10, so its first steps change u, v only
            d(torch.rand(1, 3, 32, 32))
    torch.save({"params": d.state_dict()}, paths["d"])
    features = make_layers(cfgs["E"])  # torchvision's vgg19 features, its default init, saved in its key layout
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, paths["vgg"])

    img = _source_image()
    hp = lr_size * 4
    crops = [img[y:y + hp, x:x + hp] for y, x in ((0, 0), (hp, hp), (2 * hp, 0), (0, 2 * hp))][:3]
    os.makedirs(os.path.join(paths["data"], "HR"))
    os.makedirs(os.path.join(paths["data"], "LR_bicubic", "X4"))
    write_image(os.path.join(paths["data"], "HR", "0001.png"), crops[0])
    write_image(os.path.join(paths["data"], "LR_bicubic", "X4", "0001x4.png"), imresize(crops[0], 0.25))
    probes = {"lr": np.stack([imresize(c, 0.25) for c in crops[1:]]).astype(np.float32),
              "hr": np.stack(crops[1:]).astype(np.float32)}
    return paths, probes, sizes


def train_args(paths, sizes, lr_size, steps, gan, outdir, extra=()):
    """train.py's command line of the comparison: one step per epoch so each step leaves checkpoints."""
    nf, nb, gc = sizes["g"]
    args = ["--profile", "realesrgan-x4" if gan else "realesrnet-x4", "--dataset", paths["data"],
            "--lr-transform", "none", "--realesrgan-crop", "0", "--lr-patch", str(lr_size),
            "--training-images", "1", "--validation-images", "1", "--batch-size", "1", "--no-ema",
            "--num-filters", str(nf), "--num-res-blocks", str(nb), "--growth-channels", str(gc),
            "--epochs", str(steps), "--steps-per-epoch", "1", "--validation-steps", "1", "--outdir", outdir,
            "--pretrained-model", paths["g_keras"]]
    if gan:
        args += ["--pretrained-discriminator", paths["d"], "--vgg-weights", paths["vgg"],
                 "--discriminator-filters", str(sizes["d"])]
    else:
        args += ["--no-usm-target"]  # RealESRNetModel's paired branch computes gt_usm but trains on the plain GT
    return args + list(extra)


def convert_generator(paths, workdir):
    """The G .pth converted with convert.py (what a user passes to --pretrained-model)."""
    paths["g_keras"] = os.path.join(workdir, "g.keras")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "convert.py"), "weights", "-i", paths["g"], "-o",
                        paths["g_keras"]], capture_output=True, text=True)
    if r.returncode:
        raise UserError(f"convert.py weights failed: {r.stderr.strip().splitlines()[-1]}")


def loader_batches(args, steps):
    """The batches train.py's loader hands the trainer in this run (epoch k, step 0), as uint8-valued floats."""
    from training import config as schema
    from training import setup

    config = schema.resolve(schema.build_parser(args).parse_args(args))
    data, _ = setup.load_datasets(config)
    return [data.batch(k, 0) for k in range(steps)], config


# ------------------------------------------------------------------------------------------------ reference
@contextlib.contextmanager
def _cpu_only(torch):
    """The reference models call .cuda() on their DiffJPEG / USMSharp modules: a no-op here (CPU run)."""
    cuda = torch.nn.Module.cuda
    torch.nn.Module.cuda = lambda self, *a, **k: self
    try:
        yield
    finally:
        torch.nn.Module.cuda = cuda


@contextlib.contextmanager
def _vgg_from(path, torch):
    """BasicSR's VGGFeatureExtractor reads experiments/pretrained_models/vgg19-dcbb9e9d.pth or downloads: hand it
    torchvision's vgg19 features loaded from our file instead (the weights are all it takes from there)."""
    import types

    from basicsr.archs import vgg_arch
    from torchvision.models.vgg import cfgs, make_layers

    from model.convert.torch_pickle import read_state_dict

    def vgg19(pretrained=False, **_):
        features = make_layers(cfgs["E"])
        state = {k[len("features."):]: torch.from_numpy(np.array(v)) for k, v in read_state_dict(path).items()}
        features.load_state_dict(state)
        return types.SimpleNamespace(features=features)

    saved = vgg_arch.vgg, vgg_arch.VGG_PRETRAIN_PATH
    vgg_arch.vgg, vgg_arch.VGG_PRETRAIN_PATH = types.SimpleNamespace(vgg19=vgg19), os.path.join(path, "absent")
    try:
        yield
    finally:
        vgg_arch.vgg, vgg_arch.VGG_PRETRAIN_PATH = saved


def reference_model(paths, sizes, gan):
    """RealESRGANModel (gan) or RealESRNetModel from a minimal opt dict (realesrgan_x4plus / realesrnet_x4plus
    training settings, paired data, no EMA), G and D loaded from the .pth files by the safe reader."""
    torch = _torch()
    from realesrgan.models.realesrgan_model import RealESRGANModel
    from realesrgan.models.realesrnet_model import RealESRNetModel

    from model.convert.torch_pickle import read_state_dict

    nf, nb, gc = sizes["g"]
    adam = {"type": "Adam", "lr": 1e-4 if gan else 2e-4, "weight_decay": 0, "betas": [0.9, 0.99]}
    train = {"ema_decay": 0, "optim_g": dict(adam), "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0,
                                                                  "reduction": "mean"},
             "scheduler": {"type": "MultiStepLR", "milestones": [400000 if gan else 1000000], "gamma": 0.5}}
    opt = {"name": "reference_step", "model_type": "RealESRGANModel" if gan else "RealESRNetModel", "scale": 4,
           "num_gpu": 0, "is_train": True, "dist": False, "rank": 0, "world_size": 1, "high_order_degradation": False,
           "gt_usm": True, "l1_gt_usm": True, "percep_gt_usm": True, "gan_gt_usm": False, "queue_size": 180,
           "network_g": {"type": "RRDBNet", "num_in_ch": 3, "num_out_ch": 3, "num_feat": nf, "num_block": nb,
                         "num_grow_ch": gc, "scale": 4},
           "path": {"pretrain_network_g": None, "strict_load_g": True, "resume_state": None}, "train": train}
    if gan:
        opt["network_d"] = {"type": "UNetDiscriminatorSN", "num_in_ch": 3, "num_feat": sizes["d"],
                            "skip_connection": True}
        train.update(optim_d=dict(adam), net_d_iters=1, net_d_init_iters=0,
                     perceptual_opt={"type": "PerceptualLoss", "layer_weights": dict(LAYER_WEIGHTS),
                                     "vgg_type": "vgg19", "use_input_norm": True, "perceptual_weight": 1.0,
                                     "style_weight": 0, "range_norm": False, "criterion": "l1"},
                     gan_opt={"type": "GANLoss", "gan_type": "vanilla", "real_label_val": 1.0,
                              "fake_label_val": 0.0, "loss_weight": 0.1})
    with _cpu_only(torch), _vgg_from(paths["vgg"], torch):
        ref = (RealESRGANModel if gan else RealESRNetModel)(opt)

    def load(net, path, key):
        state = read_state_dict(path)
        state = state.get(key, state)
        net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})

    load(ref.net_g, paths["g"], "params_ema")
    if gan:
        load(ref.net_d, paths["d"], "params")
    return ref


class Reference:
    """The reference side: step(batch) -> {term: float}; probe outputs; weights by name."""

    def __init__(self, paths, sizes, gan):
        self.torch = _torch()
        self.model = reference_model(paths, sizes, gan)
        self.gan, self.iteration = gan, 0

    def nets(self):
        return {"generator": self.model.net_g, **({"discriminator": self.model.net_d} if self.gan else {})}

    def step(self, batch):
        t = self.torch
        to = lambda a: t.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2) / np.float32(255)))  # noqa: E731
        self.model.feed_data({"lq": to(batch["lr"]), "gt": to(batch["hr"])})
        self.iteration += 1
        self.model.optimize_parameters(self.iteration)
        return {k: float(v) for k, v in self.model.log_dict.items()}

    def probe(self, probes):
        """G on probe LR in [0, 255] units, D's logits on probe HR; inference mode (stored SN vectors)."""
        t = self.torch
        out = {}
        with t.no_grad():
            for name, net in self.nets().items():
                x = probes["lr" if name == "generator" else "hr"]
                net.eval()
                y = net(t.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2) / np.float32(255))))
                net.train()
                out[name] = y.numpy().transpose(0, 2, 3, 1) * (255.0 if name == "generator" else 1.0)
        return out

    def weights(self):
        """{network: {key: array in Keras layout (conv kernels kh, kw, in, out)}} of the trained parameters."""
        out = {}
        for name, net in self.nets().items():
            out[name] = {k: (p.detach().numpy().transpose(2, 3, 1, 0) if p.ndim == 4 else p.detach().numpy()).copy()
                         for k, p in net.named_parameters()}
        return out


# ------------------------------------------------------------------------------------------------ project
class Project:
    """The project's side as train.py builds it (config, network, --pretrained-model, task), stepped by
    training.backend's step."""

    def __init__(self, config):
        from training import setup
        from training.backend import make_train_step
        from training.speed import default_jit_compile

        self.network = setup.build_network(config)
        setup.initialise(self.network, config, None)
        self.task = setup.make_task(config, self.network)
        jit = config["jit_compile"]
        self.step_fn = make_train_step(self.task, default_jit_compile() if jit is None else jit)
        self.built = False

    def step(self, batch):
        if not self.built:
            self.task.build(batch)
            self.built = True
        return {k: float(np.asarray(v)) for k, v in self.step_fn(batch).items()}

    def probe(self, probes):
        return probe_networks(self.task.networks, probes)

    def weights(self):
        return {name: {w.path: np.array(w.numpy() if hasattr(w, "numpy") else w).copy()
                       for w in net.trainable_weights} for name, net in self.task.networks.items()}


def probe_networks(networks, probes):
    import keras

    out = {}
    for name, net in networks.items():
        x = probes["lr" if name == "generator" else "hr"]
        out[name] = keras.ops.convert_to_numpy(net(x, training=False))[..., :3 if name == "generator" else 1]
    return out


# ------------------------------------------------------------------------------------------------ comparison
def cosine(a, b):
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))


def norm_ratio(a, b):
    return float(np.linalg.norm(np.ravel(a).astype(np.float64)) / max(np.linalg.norm(np.ravel(b)), 1e-30))


def match_weights(ours, ref):
    """{our name: reference key}: each trained tensor matched by its starting values (copied exactly)."""
    index = {}
    for k, v in ref.items():
        index.setdefault((v.shape, v.tobytes()), []).append(k)
    out = {}
    for name, v in ours.items():
        keys = index.get((v.shape, np.asarray(v, np.float32).tobytes()))
        if keys:
            out[name] = keys.pop(0)
    return out


def compare_losses(ours_logs, ref_logs, terms):
    rows = []
    for step, (o, r) in enumerate(zip(ours_logs, ref_logs), start=1):
        for ref_key, (key, weight) in terms.items():
            a, b = o[key] * weight, r[ref_key]
            rows.append({"step": step, "term": key, "project": a, "reference": b,
                         "rel_diff": abs(a - b) / max(abs(b), 1e-12)})
    return rows


def compare_updates(ours_probe, ref_probe, at):
    """{network: {"cos", "norm_ratio"}} of (f_at - f_0) on the probes, the project's against the reference's."""
    out = {}
    for name in ref_probe[0]:
        a = ours_probe[at][name] - ours_probe[0][name]
        b = ref_probe[at][name] - ref_probe[0][name]
        out[name] = {"cos": cosine(a, b), "norm_ratio": norm_ratio(a, b),
                     "ref_rms": float(np.sqrt(np.mean(np.square(b)))), "ref_rms_f0": float(np.sqrt(np.mean(
                         np.square(ref_probe[0][name]))))}
    return out


def compare_weights(w0, w3, r0, r3):
    out = {}
    for name in r0:
        pairs = match_weights(w0[name], r0[name])
        a = np.concatenate([(w3[name][k] - w0[name][k]).ravel() for k in pairs])
        b = np.concatenate([(r3[name][pairs[k]] - r0[name][pairs[k]]).ravel() for k in pairs])
        per = [cosine(w3[name][k] - w0[name][k], r3[name][pairs[k]] - r0[name][pairs[k]]) for k in pairs]
        out[name] = {"matched": f"{len(pairs)}/{len(r0[name])}", "cos": cosine(a, b), "norm_ratio": norm_ratio(a, b),
                     "median_tensor_cos": float(np.median(per)), "min_tensor_cos": float(np.min(per)),
                     "sign_agreement": float(np.mean(np.sign(a) == np.sign(b)))}
    return out


def run_pair(paths, probes, sizes, batches, config, gan, steps):
    """Reference and library step interleaved: losses, probes after 0/1/steps, weights, step times."""
    ref, ours = Reference(paths, sizes, gan), Project(config)
    ref_probe, our_probe, ref_logs, our_logs, times = {0: ref.probe(probes)}, {}, [], [], {"ref": [], "ours": []}
    r0 = ref.weights()
    for k, batch in enumerate(batches, start=1):
        t = time.perf_counter()
        ref_logs.append(ref.step(batch))
        times["ref"].append(time.perf_counter() - t)
        print(f"step {k}: reference {times['ref'][-1]:.2f} s", file=sys.stderr, flush=True)
        if k == 1:
            our_probe[0], w0 = ours.probe(probes), ours.weights()
        t = time.perf_counter()
        our_logs.append(ours.step(batch))
        times["ours"].append(time.perf_counter() - t)
        print(f"step {k}: project {times['ours'][-1]:.2f} s", file=sys.stderr, flush=True)
        if k in (1, steps):
            ref_probe[k], our_probe[k] = ref.probe(probes), ours.probe(probes)
    report = {"losses": compare_losses(our_logs, ref_logs, GAN_TERMS if gan else NET_TERMS),
              "updates": {f"after_{k}": compare_updates(our_probe, ref_probe, k) for k in (1, steps)},
              "weights": compare_weights(w0, ours.weights(), r0, ref.weights())}
    return report, (ref, ours), ref_probe, our_probe, times


def cli_run(args, probes, steps):
    """train.py in a subprocess, then its per-epoch checkpoints (G: --no-ema so the raw G; D) on the probes."""
    import keras

    from model import load_model

    r = subprocess.run([sys.executable, os.path.join(ROOT, "train.py")] + args, capture_output=True, text=True)
    if r.returncode:
        raise UserError(f"train.py failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    run_dir = sorted(glob.glob(os.path.join(args[args.index("--outdir") + 1], "*")))[-1]
    probe = {}
    for k in (1, steps):
        nets = {"generator": load_model(glob.glob(os.path.join(run_dir, "models", f"epoch-{k:03d}*.keras"))[0],
                                        compile=False)}
        d_path = os.path.join(run_dir, "models", "discriminator", f"epoch-{k:03d}.keras")
        if os.path.isfile(d_path):
            nets["discriminator"] = keras.models.load_model(d_path, compile=False)
        probe[k] = probe_networks(nets, probes)
    return probe


def check(report, loss_tol=1e-3, cos_min=0.999, norm_tol=0.02):
    """Failures of the issue's criteria (losses rel <= 1e-3; probe updates cos >= 0.999, norm within 2 %)."""
    bad = [f"step {r['step']} {r['term']}: rel {r['rel_diff']:.2e}" for r in report["losses"]
           if r["rel_diff"] > loss_tol]
    for section in ("updates", "cli_updates"):
        for when, nets in report.get(section, {}).items():
            for name, v in nets.items():
                if v["cos"] < cos_min or abs(v["norm_ratio"] - 1) > norm_tol:
                    bad.append(f"{section} {when} {name}: cos {v['cos']:.5f} norm ratio {v['norm_ratio']:.4f}")
    return bad


def speed_steps(pair, batch, n):
    """n more warm steps of each side, interleaved."""
    ref, ours = pair
    out = {"ref": [], "ours": []}
    for _ in range(n):
        for name, side in (("ref", ref), ("ours", ours)):
            t = time.perf_counter()
            side.step(batch)
            out[name].append(time.perf_counter() - t)
            print(f"warm step: {name} {out[name][-1]:.2f} s", file=sys.stderr, flush=True)
    return out


def set_threads(n):
    """n CPU threads for each side (TensorFlow's intra/inter-op pools, torch's OpenMP). On a loaded machine
    torch's OpenMP threads wait on each other far more than TensorFlow's pool (measured: the small reference step
    0.6 s on 1 thread, 6-15 s on 2 with the load at 10 on 2 cores), so the comparison pins both to the same count."""
    torch = _torch()
    torch.set_num_threads(n)
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(n)
        except RuntimeError:  # TensorFlow already started in this process (a test worker): its pools stay
            pass


def run(small=False, lr_size=32, steps=3, cli=(), speed=0, workdir=None, recipes=("realesrgan", "realesrnet"),
        threads=1, extra=()):
    """The report: per recipe the loss rows, probe and weight updates, step times, failures; `cli`: the recipes
    also run through train.py."""
    import keras

    if threads:
        set_threads(threads)
    report = {"backend": keras.backend.backend(), "small": small, "lr_size": lr_size, "steps": steps,
              "threads": threads}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = workdir or tmp
        paths, probes, sizes = write_inputs(workdir, small, lr_size)
        convert_generator(paths, workdir)
        for recipe in recipes:
            gan = recipe == "realesrgan"
            args = train_args(paths, sizes, lr_size, steps, gan, os.path.join(workdir, f"runs-{recipe}"), extra)
            batches, config = loader_batches(args, steps)
            rep, pair, ref_probe, our_probe, times = run_pair(paths, probes, sizes, batches, config, gan, steps)
            rep["seconds"] = s = {"steps": times, "first": {k: v[0] for k, v in times.items()}}
            s["first_ratio"] = s["first"]["ours"] / s["first"]["ref"]
            if speed:  # warm: after the compared steps (the project's first steps are eager, then the graph's first)
                s["warm"] = speed_steps(pair, batches[-1], speed)
                s["warm_median"] = {k: statistics.median(v) for k, v in s["warm"].items()}
                s["warm_ratio"] = s["warm_median"]["ours"] / s["warm_median"]["ref"]
            if recipe in cli:
                # the CLI starts from the same files, so the library run's step-0 probes are its f_0 too
                cli_probe = {0: our_probe[0], **cli_run(args, probes, steps)}
                rep["cli_updates"] = {f"after_{k}": compare_updates(cli_probe, ref_probe, k) for k in (1, steps)}
            rep["failures"] = check(rep)
            report[recipe] = rep
    return report
