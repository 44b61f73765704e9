"""Data-parallel training on several devices and hosts with the engines' own distribution, and mixed precision.

- JAX: `keras.distribution.DataParallel` over a 1-D device mesh ("batch" axis); `keras.distribution.initialize`
  (jax.distributed) joins several processes/hosts. Variables made while the distribution is set are
  replicated; each batch is placed sharded over "batch" straight from host memory (`jax.device_put`, or
  `jax.make_array_from_process_local_data` with several processes). The jitted step then sees the global batch:
  XLA's SPMD partitioner all-reduces the gradients of the mean-over-global-batch loss by itself, so the
  update equals the one-device update (tests/test_distribute.py checks it).
- TensorFlow: `tf.distribute.MirroredStrategy` (one host) or `MultiWorkerMirroredStrategy` (TF_CONFIG, several
  hosts); networks and optimizers are built under `strategy.scope()`, the step runs per replica via
  `strategy.run`. Keras's TF optimizer SUM-all-reduces the gradients inside `apply` and nothing rescales a
  hand-written loss, so each replica's gradients are divided by the number of replicas first (mean of the
  per-replica means = the global-batch mean for an even split).

`from_options(...)` returns the `Distribution` the trainer uses; a single device gets the base class, which
changes nothing. Only process 0 (`is_chief`) validates, saves, logs and shows a progress bar.
See docs/distributed.md.
"""
import contextlib
import os

import numpy as np

from utils import UserError

# Environment equivalents of the command-line options, for Slurm / torchrun-style launchers (first found wins;
# the command line wins over all of them).
ENV_COORDINATOR = ("SISR_COORDINATOR", "KERAS_DISTRIBUTION_JOB_ADDRESSES")
ENV_NUM_PROCESSES = ("SISR_NUM_PROCESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES", "WORLD_SIZE", "SLURM_NTASKS")
ENV_PROCESS_ID = ("SISR_PROCESS_ID", "KERAS_DISTRIBUTION_PROCESS_ID", "RANK", "SLURM_PROCID")
ENV_DEVICES = ("SISR_DEVICES",)

POLICIES = {"bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def _env(names, environ):
    for name in names:
        value = environ.get(name)
        if value not in (None, ""):
            return value
    return None


def launch_options(devices=None, coordinator=None, num_processes=None, process_id=None, environ=None):
    """Command-line values completed from the environment: (devices, coordinator, num_processes, process_id)."""
    environ = os.environ if environ is None else environ
    if (coordinator is not None or process_id is not None) and num_processes is None \
            and _env(ENV_NUM_PROCESSES, environ) is None:
        raise UserError("--coordinator / --process-id need --num-processes (the number of processes in the job)")
    devices = devices if devices is not None else _env(ENV_DEVICES, environ)
    coordinator = coordinator or _env(ENV_COORDINATOR, environ)
    if coordinator is None and environ.get("MASTER_ADDR") and environ.get("MASTER_PORT"):
        coordinator = f"{environ['MASTER_ADDR']}:{environ['MASTER_PORT']}"  # torchrun's rendezvous
    if num_processes is None:
        num_processes = _env(ENV_NUM_PROCESSES, environ)
    if process_id is None:
        process_id = _env(ENV_PROCESS_ID, environ)
    try:
        num_processes = None if num_processes is None else int(num_processes)
        process_id = None if process_id is None else int(process_id)
    except ValueError:
        raise UserError(f"--num-processes {num_processes} / --process-id {process_id}: expected integers") from None
    if num_processes is not None and num_processes <= 1:
        num_processes = None  # a launcher's WORLD_SIZE=1: one process
    if num_processes is None:
        coordinator = process_id = None
    return devices, coordinator, num_processes, process_id


def parse_devices(devices, available):
    """--devices N|all -> a count, checked against the `available` devices of this process."""
    if devices is None:
        return 1
    text = str(devices).strip().lower()
    if text == "all":
        return available
    try:
        n = int(text)
    except ValueError:
        raise UserError(f"--devices {devices}: expected a number or 'all'") from None
    if n < 1:
        raise UserError(f"--devices {devices}: must be at least 1")
    if n > available:
        raise UserError(f"--devices {n}: only {available} device(s) visible to this process (on a CPU, "
                        f"XLA_FLAGS=--xla_force_host_platform_device_count={n} makes virtual JAX devices)")
    return n


def split_batch(batch_size, replicas):
    """Per-device batch of a global `batch_size`; a one-line UserError when it does not divide."""
    batch_size, replicas = int(batch_size), int(replicas)
    if batch_size % replicas:
        raise UserError(f"--batch-size {batch_size} does not split evenly over {replicas} devices; "
                        f"use a multiple of {replicas}")
    return batch_size // replicas


class ProcessShard:
    """A trainer data source reduced to this process's rows of every global batch.

    Every process agrees on the global batch (`data.batch(epoch, index)` is a function of (seed, epoch, index)
    only). A source with data.py's shard hook (`batch(epoch, index, process_index, process_count)`, samples
    from `data.shard_indices`: contiguous, disjoint, together complete) makes only this process's samples;
    any other source is made whole and sliced the same way.
    """

    def __init__(self, data, batch_size, process_index, process_count):
        self.data, self.process_index, self.process_count = data, int(process_index), int(process_count)
        per = split_batch(batch_size, process_count)
        self.rows = slice(self.process_index * per, (self.process_index + 1) * per)
        self._hook = _has_shard_hook(data)

    def batch(self, epoch, index):
        if self._hook:
            return self.data.batch(epoch, index, process_index=self.process_index, process_count=self.process_count)
        return {k: v[self.rows] for k, v in self.data.batch(epoch, index).items()}

    def __getattr__(self, name):
        return getattr(self.data, name)


def _has_shard_hook(data):
    import inspect

    try:
        params = inspect.signature(data.batch).parameters
    except (TypeError, ValueError, AttributeError):
        return False
    return "process_index" in params and "process_count" in params


class Distribution:
    """One device, one process: nothing is distributed (the default)."""

    kind = "single"
    replicas = local_replicas = 1
    process_index, process_count = 0, 1

    @property
    def is_chief(self):
        return self.process_index == 0

    @property
    def active(self):
        return self.replicas > 1 or self.process_count > 1

    def describe(self):
        return "1 device"

    def scope(self):
        """Context under which networks and optimizers are built (TF strategy scope; JAX: set globally)."""
        return contextlib.nullcontext()

    def per_device_batch(self, batch_size):
        return split_batch(batch_size, self.replicas)

    def shard_data(self, data, batch_size):
        """The data source this process reads (its rows of each global batch)."""
        self.per_device_batch(batch_size)
        if self.process_count == 1:
            return data
        return ProcessShard(data, batch_size, self.process_index, self.process_count)

    def place(self, batch):
        """Host batch (dict of numpy arrays, this process's rows) -> what the step takes."""
        return batch

    def make_train_step(self, task, jit_compile=False, grad_transform=None):
        from training import backend

        return backend.make_train_step(task, jit_compile, grad_transform)

    @contextlib.contextmanager
    def published(self, network, ema=None):
        """The network the chief validates and saves: the EMA weights swapped in when kept (trainer.EMA),
        and, when the devices span several processes, a copy on this process alone (a computation over the
        others' devices would wait for them)."""
        if self.process_count == 1:
            with ema.swapped() if ema is not None else contextlib.nullcontext():
                yield network
            return
        yield _local_copy(network, ema.averages if ema is not None else None)


class JaxDistribution(Distribution):
    """keras.distribution.DataParallel over `devices` (jax.Device objects of every process)."""

    kind = "jax"

    def __init__(self, devices, process_index, process_count):
        import keras

        self.devices = list(devices)
        self.replicas = len(self.devices)
        self.local_replicas = sum(d.process_index == process_index for d in self.devices)
        self.process_index, self.process_count = process_index, process_count
        self.keras_distribution = keras.distribution.DataParallel(devices=self.devices)
        # set globally, not as a scope: every variable made from now on (networks, optimizers, EMA, a
        # resume) is replicated over the mesh, and Keras's own data distribution sees it too
        keras.distribution.set_distribution(self.keras_distribution)

    def describe(self):
        kind = self.devices[0].platform.upper()
        procs = f" in {self.process_count} processes" if self.process_count > 1 else ""
        return f"{self.replicas} {kind} devices{procs} (JAX, keras.distribution.DataParallel)"

    def _sharding(self, global_shape):
        return self.keras_distribution.get_data_layout(global_shape).backend_layout

    def place(self, batch):
        import jax

        out = {}
        for k, v in batch.items():
            v = np.asarray(v)
            global_shape = (v.shape[0] * self.process_count,) + v.shape[1:]
            sharding = self._sharding(global_shape)
            if self.process_count == 1:
                out[k] = jax.device_put(v, sharding)  # host -> each device its rows, no gather
            else:
                out[k] = jax.make_array_from_process_local_data(sharding, v, global_shape)
        return out

    def make_train_step(self, task, jit_compile=False, grad_transform=None):
        from training import backend

        step = backend.make_train_step(task, jit_compile, grad_transform)
        return lambda batch: step(self.place(batch))


class TFDistribution(Distribution):
    """tf.distribute.MirroredStrategy / MultiWorkerMirroredStrategy with Keras 3 networks and optimizers."""

    kind = "tensorflow"

    def __init__(self, strategy, process_index=0, process_count=1):
        self.strategy = strategy
        self.replicas = int(strategy.num_replicas_in_sync)
        self.process_index, self.process_count = process_index, process_count
        self.local_replicas = self.replicas // process_count

    def describe(self):
        devices = self.strategy.extended.worker_devices
        procs = f" in {self.process_count} processes" if self.process_count > 1 else ""
        return (f"{self.replicas} devices{procs} (TensorFlow {type(self.strategy).__name__}: "
                f"{', '.join(devices)})")

    def scope(self):
        return self.strategy.scope()

    def place(self, batch):
        per = next(iter(batch.values())).shape[0] // self.local_replicas
        first = self.process_index * self.local_replicas

        def value(ctx, array):
            import tensorflow as tf

            k = ctx.replica_id_in_sync_group - first
            return tf.constant(array[k * per:(k + 1) * per])

        return {k: self.strategy.experimental_distribute_values_from_function(lambda ctx, a=v: value(ctx, a))
                for k, v in batch.items()}

    def make_train_step(self, task, jit_compile=False, grad_transform=None):
        import tensorflow as tf

        from training import backend

        replicas = self.replicas

        def averaged(phase, grads):
            # Keras's TF optimizer SUM-all-reduces in apply(): per-replica means / replicas sum to the global mean
            grads = [None if g is None else g / tf.cast(replicas, g.dtype) for g in grads]
            return grad_transform(phase, grads) if grad_transform is not None else grads

        # the per-replica step is backend.make_train_step's one-device step; strategy.run and the reductions wrap
        # it in one graph. No XLA: with variables mirrored on several devices XLA fails ("Trying to access
        # resource ... located in device CPU:1 from device CPU:0", compiled per replica or whole), and Keras's
        # own fit turns XLA off under tf.distribute for the same reason.
        per_replica = backend.make_train_step(task, False, averaged)
        strategy = self.strategy

        @tf.function
        def run(batch):
            logs = strategy.run(per_replica, args=(batch,))
            return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in logs.items()}

        return lambda batch: run(self.place(batch))


def _local_copy(network, weights=None):
    """The network rebuilt outside the distribution with its weights (or `weights`, in network.weights order)."""
    import keras

    weights = network.get_weights() if weights is None else weights
    previous = keras.distribution.distribution() if keras.backend.backend() == "jax" else None
    if previous is not None:
        keras.distribution.set_distribution(None)
    try:
        copy = network.__class__.from_config(network.get_config())  # an SRModel stays one (clone_model: Functional)
        copy.set_weights(weights)
    finally:
        if previous is not None:
            keras.distribution.set_distribution(previous)
    return copy


def from_options(devices=None, coordinator=None, num_processes=None, process_id=None, environ=None):
    """The Distribution for these options (environment equivalents filled in). Call it before anything runs on
    a device: several processes must join before JAX's first computation, and TensorFlow's virtual CPU devices
    and strategies must exist before its runtime starts."""
    import keras

    devices, coordinator, num_processes, process_id = launch_options(devices, coordinator, num_processes,
                                                                     process_id, environ)
    backend = keras.backend.backend()
    if num_processes is not None:
        if process_id is None or not 0 <= process_id < num_processes:
            raise UserError(f"--process-id {process_id}: give this process's index, 0 to {num_processes - 1}")
        if coordinator is None and backend == "jax":
            raise UserError(f"--num-processes {num_processes} needs --coordinator HOST:PORT (process 0's address)")
    if devices is None and num_processes is None:
        return Distribution()
    if backend == "jax":
        return _jax_from_options(devices, coordinator, num_processes, process_id)
    if backend == "tensorflow":
        return _tf_from_options(devices, coordinator, num_processes, process_id, environ)
    if parse_devices(devices, 1) == 1 and num_processes is None:
        return Distribution()
    raise UserError(f"--devices / --num-processes need the JAX or TensorFlow backend (KERAS_BACKEND={backend})")


def _jax_from_options(devices, coordinator, num_processes, process_id):
    import jax
    import keras

    if num_processes is not None:
        keras.distribution.initialize(coordinator.split(",")[0], num_processes, process_id)
        if devices is None:
            devices = "all"
    local = jax.local_devices()
    n = parse_devices(devices, len(local))
    count = jax.process_count()
    chosen = []
    for p in range(count):  # the first n devices of every process (each process is given the same --devices)
        mine = sorted((d for d in jax.devices() if d.process_index == p), key=lambda d: d.id)
        chosen.extend(mine[:n])
    if len(chosen) == 1:
        return Distribution()
    return JaxDistribution(chosen, jax.process_index(), count)


def _tf_from_options(devices, coordinator, num_processes, process_id, environ):
    import json

    import tensorflow as tf

    environ = os.environ if environ is None else environ
    gpus = tf.config.list_physical_devices("GPU")
    if num_processes is not None:
        if coordinator and "," in coordinator:
            workers = coordinator.split(",")
            if len(workers) != num_processes:
                raise UserError(f"--coordinator lists {len(workers)} workers but --num-processes is {num_processes}")
            os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": workers},
                                                  "task": {"type": "worker", "index": process_id}})
        elif "TF_CONFIG" not in environ:
            raise UserError("TensorFlow with several processes: give --coordinator HOST:PORT,HOST:PORT,... "
                            "(every worker, in process order) or set TF_CONFIG")
        if not gpus and devices not in (None, "1", 1):
            _virtual_cpus(tf, parse_devices(devices, 64))
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        return TFDistribution(strategy, process_id, num_processes)
    if gpus:
        n = parse_devices(devices, len(gpus))
        names = [f"/gpu:{i}" for i in range(n)]
    else:
        # CPU only: N logical devices on the one physical CPU (how tests and CPU machines run N replicas);
        # "all" means the logical CPU devices already configured (1 unless set up before)
        n = len(tf.config.list_logical_devices("CPU")) if str(devices).lower() == "all" else parse_devices(devices, 1 << 10)
        if n > 1:
            _virtual_cpus(tf, n)
        names = [f"/cpu:{i}" for i in range(n)]
    if n == 1:
        return Distribution()
    return TFDistribution(tf.distribute.MirroredStrategy(names))


def _virtual_cpus(tf, n):
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:
        have = len(tf.config.list_logical_devices("CPU"))
        if have < n:
            raise UserError(f"--devices {n}: TensorFlow already started with {have} CPU device(s); "
                            f"choose the devices before anything runs") from None


# ------------------------------------------------------------------------------------------------------------
# Mixed precision
# ------------------------------------------------------------------------------------------------------------


def set_mixed_precision(mode):
    """--mixed-precision bf16|fp16|None: Keras's global dtype policy for the networks built after this call."""
    import keras

    if mode in (None, "", "none", "float32", "fp32"):
        keras.mixed_precision.set_dtype_policy("float32")
        return None
    if mode not in POLICIES:
        raise UserError(f"--mixed-precision {mode}: choose bf16 or fp16")
    keras.mixed_precision.set_dtype_policy(POLICIES[mode])
    return POLICIES[mode]


def keep_outputs_float32(network):
    """Compute the output layers of `network` in float32 under a mixed policy: every layer from the outputs back
    to (and including) the first layers with weights (the last convs, the log-variance head), so the model's
    output, and the losses and metrics computed on it, are float32. Returns the names changed."""
    changed = []
    seen = set()
    try:
        stack = [t._keras_history.operation for t in network.outputs]
    except (AttributeError, ValueError):  # not a functional model: nothing to walk
        return changed
    while stack:
        layer = stack.pop()
        if id(layer) in seen or layer.__class__.__name__ == "InputLayer":
            continue
        seen.add(id(layer))
        if layer.dtype_policy.compute_dtype != "float32":
            layer.dtype_policy = "float32"
            changed.append(layer.name)
        if layer.weights:
            continue
        for node in layer._inbound_nodes:
            for t in node.input_tensors:
                stack.append(t._keras_history.operation)
    return changed


def loss_scaled(optimizer, mode):
    """fp16 loss scaling: the optimizer factory's (optimizer.loss_scaled), which every network's optimizer gets."""
    from optimizer import loss_scaled as scaled

    return scaled(optimizer, mode)


def float32_network(network):
    """A float32 copy of a network built under a mixed policy (what published checkpoints hold, so bench.py
    and inference compute in float32); the network itself when it is float32 already."""
    import keras

    if all(layer.dtype_policy.name == "float32" for layer in network.layers):
        return network

    def strip(obj):
        if isinstance(obj, dict):
            if obj.get("class_name") == "DTypePolicy" and isinstance(obj.get("config"), dict):
                return {**obj, "config": {**obj["config"], "name": "float32"}}
            return {k: ("float32" if k == "dtype" and isinstance(v, str) and v.startswith("mixed_") else strip(v))
                    for k, v in obj.items()}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj

    config = strip(network.get_config())
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("float32")
    try:
        copy = network.__class__.from_config(config)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    copy.set_weights(network.get_weights())
    return copy
