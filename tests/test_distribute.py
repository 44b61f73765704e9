"""Data-parallel training (training/distribute.py) on CPU virtual devices.

One module fixture starts every engine run at once (subprocesses: one backend and one device setting per
process): a 2-device JAX run (XLA_FLAGS=--xla_force_host_platform_device_count=2), a 2-replica TensorFlow run
(two logical CPU devices) and a 2-process JAX run on 127.0.0.1 (one virtual device per process). Each trains a
tiny EDSR 2 steps through training.Trainer with plain SGD (an update proportional to the gradient: Adam's
scale invariance would hide a gradient summed instead of averaged over the devices) and EMA, and writes its
checkpoint; the single-device JAX and TF runs are made in the same processes as references.
"""
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, jax_env
from utils import UserError

WORKER = r'''
import json, os, sys
import numpy as np
args = json.loads(sys.argv[1])
from training import distribute
dist = distribute.from_options(args.get("devices"), args.get("coordinator"), args.get("num_processes"),
                               args.get("process_id"))
import keras
from keras import ops
from model import build_model
from training.task import PixelTask
from training.trainer import Trainer


class Source:
    """Global batches of 4 that depend on (epoch, index) only; no shard hook (sliced by ProcessShard)."""

    def batch(self, epoch, index):
        rng = np.random.default_rng([epoch, index])
        return {"lr": rng.uniform(0, 255, (4, 6, 6, 3)).astype("float32"),
                "hr": rng.uniform(0, 255, (4, 12, 12, 3)).astype("float32")}


def train(d, run_dir):
    keras.utils.set_random_seed(0)
    with d.scope():
        net = build_model("edsr", 2, num_filters=8, num_res_blocks=1)
        task = PixelTask(net, keras.optimizers.SGD(1e-4), ema_decay=0.5,
                         loss=lambda hr, sr: ops.mean(ops.abs(hr - sr), axis=(1, 2, 3)))
    trainer = Trainer(task, d.shard_data(Source(), 4), run_dir, epochs=1, steps_per_epoch=2,
                      jit_compile=keras.backend.backend() == "jax", workers=0, tensorboard=False, progress=False,
                      distribution=d)
    trainer.fit()


if args.get("reference"):  # the one-device run, in the same process
    if keras.backend.backend() == "jax":
        keras.distribution.set_distribution(None)
    train(distribute.Distribution(), args["reference"])
    if keras.backend.backend() == "jax":
        keras.distribution.set_distribution(dist.keras_distribution)
train(dist, args["run_dir"])
result = {"replicas": dist.replicas, "process": dist.process_index, "describe": dist.describe()}
if args.get("mixed"):  # fp16 (loss scaling) then bf16 on the same devices, through the distributed step
    for mode in ("fp16", "bf16"):
        distribute.set_mixed_precision(mode)
        keras.utils.set_random_seed(0)
        with dist.scope():
            net = build_model("edsr", 2, num_filters=8, num_res_blocks=1, pred_logvar=True)
            changed = distribute.keep_outputs_float32(net)
            opt = distribute.loss_scaled(keras.optimizers.Adam(1e-3), mode)
            task = PixelTask(net, opt, loss=lambda hr, sr: ops.mean(ops.abs(hr - sr[..., :3]), axis=(1, 2, 3)))
            data = dist.shard_data(Source(), 4)
            task.build(data.batch(0, 0))
        step = dist.make_train_step(task, keras.backend.backend() == "jax")
        losses = [float(ops.convert_to_numpy(step(data.batch(0, 0))["loss"])) for _ in range(8 if mode == "fp16" else 2)]
        copy = distribute.float32_network(net)
        result[mode] = {"losses": losses, "out": str(net(data.batch(0, 0)["lr"][:1]).dtype),
                        "head": net.get_layer("head").compute_dtype, "changed": sorted(changed),
                        "copy": sorted({layer.dtype_policy.name for layer in copy.layers})}
    distribute.set_mixed_precision(None)
print(json.dumps(result))
'''


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(backend, devices):
    if backend == "jax":
        env = jax_env(ROOT)
        env["XLA_FLAGS"] += f" --xla_force_host_platform_device_count={devices}"
    else:
        env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """All engine runs, started together (they are mostly start-up time); name -> (returncode, output, dirs)."""
    tmp = tmp_path_factory.mktemp("distribute")
    worker = tmp / "worker.py"
    worker.write_text(WORKER)
    port = _free_port()
    jobs = {
        "jax": ("jax", 2, {"devices": 2, "reference": str(tmp / "jax1"), "run_dir": str(tmp / "jax2"), "mixed": 1}),
        "tf": ("tensorflow", 2, {"devices": 2, "reference": str(tmp / "tf1"), "run_dir": str(tmp / "tf2"), "mixed": 1}),
    }
    for pid in range(2):
        jobs[f"proc{pid}"] = ("jax", 1, {"coordinator": f"127.0.0.1:{port}", "num_processes": 2, "process_id": pid,
                                         "run_dir": str(tmp / f"proc{pid}")})
    procs = {name: subprocess.Popen([sys.executable, str(worker), json.dumps(a)], env=_env(b, n), cwd=tmp,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name, (b, n, a) in jobs.items()}
    deadline = time.time() + 300
    out = {}
    for name, p in procs.items():
        try:
            text, _ = p.communicate(timeout=max(1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            text, _ = p.communicate()
        out[name] = (p.returncode, text, tmp)
    return out


def _ok(runs, name):
    code, text, tmp = runs[name]
    assert code == 0, f"{name} failed:\n{text[-3000:]}"
    return json.loads(text.strip().splitlines()[-1]), tmp


def _checkpoint_weights(run_dir):
    import model

    files = sorted(os.listdir(os.path.join(run_dir, "models")))
    assert files == ["epoch-001.keras"], files  # exactly one checkpoint per run
    net = model.load_model(os.path.join(run_dir, "models", files[0]))  # loads on one device (this process)
    return net.get_weights()


def _assert_same(a, b, atol=1e-5):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=0, atol=atol)
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


@pytest.mark.parametrize("name", ["jax", "tf"])
def test_two_devices_equal_one_device(runs, name):
    info, tmp = _ok(runs, name)
    assert info["replicas"] == 2, info
    one = _checkpoint_weights(tmp / f"{name}1")
    two = _checkpoint_weights(tmp / f"{name}2")
    _assert_same(one, two)
    # the runs did train: the EMA checkpoint moved away from a fresh network's weights
    import keras

    from model import build_model

    keras.utils.set_random_seed(0)
    initial = build_model("edsr", 2, num_filters=8, num_res_blocks=1).get_weights()
    assert max(float(np.abs(x - y).max()) for x, y in zip(one, initial)) > 1e-3


def test_two_processes_equal_single_process(runs):
    info0, tmp = _ok(runs, "proc0")
    info1, _ = _ok(runs, "proc1")
    assert (info0["replicas"], info0["process"], info1["process"]) == (2, 0, 1)
    assert "2 processes" in info0["describe"]
    _ok(runs, "jax")
    _assert_same(_checkpoint_weights(tmp / "jax1"), _checkpoint_weights(tmp / "proc0"))
    assert not (tmp / "proc1").exists()  # process 1 wrote nothing: no state, logs or checkpoints
    assert {p for p in os.listdir(tmp / "proc0")} >= {"models", "state.json"}


def test_shards_disjoint_and_complete(tiny_div2k):
    import data
    from training.distribute import ProcessShard

    pairs = data.open_pairs(tiny_div2k, 2, subset="train")
    patches = data.Patches(pairs, 2, batch_size=4, lr_patch=8, seed=3, steps=3)
    for count in (1, 2, 4):
        seen = [i for p in range(count) for i in patches.epoch_indices(1, p, count)]
        assert sorted(seen) == list(range(12)) and len(set(seen)) == 12  # disjoint and complete
        for index in range(3):
            full = patches.batch(1, index)
            shards = [ProcessShard(patches, 4, p, count).batch(1, index) for p in range(count)]
            for key in full:
                np.testing.assert_array_equal(np.concatenate([s[key] for s in shards]), full[key])

    class NoHook:  # a source without the hook is made whole and sliced the same way
        def batch(self, epoch, index):
            return patches.batch(epoch, index)

    halves = [ProcessShard(NoHook(), 4, p, 2).batch(1, 0)["hr"] for p in range(2)]
    np.testing.assert_array_equal(np.concatenate(halves), patches.batch(1, 0)["hr"])
    # deterministic by (seed, epoch): the same batch again, another one next epoch
    np.testing.assert_array_equal(patches.batch(1, 0)["hr"], patches.batch(1, 0)["hr"])
    assert not np.array_equal(patches.batch(1, 0)["hr"], patches.batch(2, 0)["hr"])


def test_batch_not_divisible_and_bad_devices():
    from training import distribute

    with pytest.raises(UserError, match=r"--batch-size 6 does not split evenly over 4 devices"):
        distribute.split_batch(6, 4)
    assert distribute.split_batch(8, 4) == 2
    with pytest.raises(UserError, match=r"--devices 3: only 2 device"):
        distribute.parse_devices("3", 2)
    with pytest.raises(UserError, match="a number or 'all'"):
        distribute.parse_devices("two", 2)
    assert distribute.parse_devices("all", 2) == 2 and distribute.parse_devices(None, 2) == 1


def test_launcher_environment():
    from training.distribute import launch_options

    slurm = {"SLURM_NTASKS": "4", "SLURM_PROCID": "3", "SISR_COORDINATOR": "node1:1234"}
    assert launch_options(environ=slurm) == (None, "node1:1234", 4, 3)
    torchrun = {"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}
    assert launch_options(environ=torchrun) == (None, "10.0.0.1:29500", 2, 1)
    # the command line wins; a launcher's single process is no multi-process job
    assert launch_options("2", "h:1", 2, 0, environ=slurm) == ("2", "h:1", 2, 0)
    assert launch_options(environ={"WORLD_SIZE": "1", "RANK": "0"}) == (None, None, None, None)
    with pytest.raises(UserError, match="need --num-processes"):
        launch_options(coordinator="h:1", environ={})


@pytest.mark.parametrize("name", ["jax", "tf"])
def test_mixed_precision_on_two_devices(runs, name):
    info, _ = _ok(runs, name)
    for mode, dtype in (("fp16", "float16"), ("bf16", "bfloat16")):
        r = info[mode]
        assert r["head"] == dtype and "float32" in r["out"], r  # convs in low precision, the output float32
        assert r["changed"] == ["denormalize", "mean_logvar", "tail", "tail_logvar"], r
        assert r["copy"] == ["float32"], r  # what checkpoints hold
    fp16 = info["fp16"]["losses"]
    # dynamic loss scaling: the first steps overflow and are skipped (loss unchanged) while the scale halves,
    # then it trains (under JAX the scale used to be a trace-time constant: every step was skipped)
    assert fp16[1] == fp16[0] and fp16[-1] < fp16[0] - 0.1, fp16
    bf16 = info["bf16"]["losses"]
    assert bf16[1] < bf16[0], bf16
