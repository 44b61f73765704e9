"""THE backend-specific training code: one train step for a `Task`, per Keras backend.

`make_train_step(task, jit_compile)` returns `step(batch) -> {name: scalar}` that runs every phase of the
task in order (each phase: losses, gradients of that network's trainable variables, its optimizer's update)
and leaves all variables updated in place, so a checkpoint can be written after any step. A phase may hand
values to the later ones (`task.phase_losses`'s handoff, e.g. a GAN's SR): they are computed before that
phase's optimizer update and reach the later phases with the gradient stopped (BasicSR's `output.detach()`).

- TensorFlow: `tf.GradientTape` inside one `tf.function` (XLA with jit_compile=True). The first
  `task.eager_first_steps` optimizer steps of a run (a GAN task's 2, a pixel task's none; counted by the
  optimizer's iterations, so a resumed run makes the same choice) run eagerly while the function is traced on a
  background thread: the first step no longer waits for the trace.
- JAX: a pure function of (network values, optimizer values, batch) under `keras.StatelessScope`,
  `jax.value_and_grad(has_aux=True)` per phase (the handoff rides in the aux), `optimizer.stateless_apply`;
  jitted; the state is threaded from phase to phase, then written back to the variables.
- PyTorch: `backward()` per phase, gradients cleared before each phase.

Logged names: "loss" (the phase total; "<phase>_loss" with several phases) plus the task's terms.
`grad_transform(phase, grads) -> grads` (optional) runs on the gradients inside the step, before the
optimizer: the hook for gradient all-reduce or clipping (training/distribute.py).
"""
import threading

import keras

def loss_key(task, phase):
    return "loss" if len(task.phases) == 1 else f"{phase}_loss"


def make_train_step(task, jit_compile=False, grad_transform=None, eager_steps=None):
    """eager_steps (TensorFlow): how many first optimizer steps run eagerly (None: the task's eager_first_steps)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        if eager_steps is None:
            eager_steps = getattr(task, "eager_first_steps", 0)
        return _tensorflow_step(task, jit_compile, grad_transform, eager_steps)
    if backend == "jax":
        return _jax_step(task, jit_compile, grad_transform)
    if backend == "torch":
        return _torch_step(task, grad_transform)
    raise RuntimeError(f"training is not supported on the {backend} backend")


def _tensorflow_step(task, jit_compile, grad_transform, eager_steps):
    import tensorflow as tf

    def step(batch):
        logs, carry = {}, {}
        for phase in task.phases:
            opt = task.optimizers[phase]
            variables = task.trainable_variables(phase)
            with tf.GradientTape() as tape:
                total, terms, handoff = task.phase_losses(phase, batch, carry)
                scaled = opt.scale_loss(total) if hasattr(opt, "scale_loss") else total
            grads = tape.gradient(scaled, variables)
            if grad_transform is not None:
                grads = grad_transform(phase, grads)
            # automatic control dependencies read the handoff's variables before this update writes them
            opt.apply(grads, variables)
            carry.update({k: tf.stop_gradient(v) for k, v in handoff.items()})
            logs[loss_key(task, phase)] = total
            logs.update(terms)
        return logs

    graph = tf.function(step, jit_compile=bool(jit_compile), reduce_retracing=True)
    if not eager_steps:
        return graph
    iterations = task.optimizers[task.phases[0]].iterations
    trace = {}

    def background(spec):
        try:
            graph.get_concrete_function(spec)
        except BaseException as e:  # re-raised by the step that needs the graph
            trace["error"] = e

    def first_steps_eager(batch):
        if not tf.executing_eagerly():  # called inside a caller's tf.function (tf.distribute): part of its graph
            return step(batch)
        if int(keras.ops.convert_to_numpy(iterations.value)) >= eager_steps:
            if "thread" in trace:
                trace.pop("thread").join()
                if "error" in trace:
                    raise trace.pop("error")
            return graph(batch)
        logs = step(batch)
        if "thread" not in trace:  # after the first step: the trace would slow it (both hold the GIL in turn)
            spec = {k: tf.TensorSpec(tuple(v.shape), tf.as_dtype(v.dtype)) for k, v in batch.items()}
            # not a daemon: a run that ends (or fails) before the trace does waits for it at exit, where a daemon
            # thread still inside TensorFlow aborts the process (exit 134, "terminate called ...")
            trace["thread"] = threading.Thread(target=background, args=(spec,), daemon=False, name="trace-train-step")
            trace["thread"].start()
        return logs

    first_steps_eager.graph = graph
    return first_steps_eager


def _unique_variables(task):
    """Every variable of every network, each once (shared layers appear in one list only)."""
    seen, out = set(), []
    for net in task.networks.values():
        for v in net.trainable_variables + net.non_trainable_variables:
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
    return out


def _jax_step(task, jit_compile, grad_transform):
    import jax

    net_vars = _unique_variables(task)
    position = {id(v): i for i, v in enumerate(net_vars)}
    phases = task.phases
    train_idx = {p: [position[id(v)] for v in task.trainable_variables(p)] for p in phases}
    opt_vars = {p: list(task.optimizers[p].variables) for p in phases}

    def pure(net_values, opt_values, batch):
        net_values = list(net_values)
        opt_values = {p: list(v) for p, v in opt_values.items()}
        logs, carry = {}, {}
        for phase in phases:
            idx = train_idx[phase]

            def loss_fn(train_values, net_values, phase=phase, idx=idx, opt_state=opt_values[phase], carry=carry):
                values = list(net_values)
                for i, t in zip(idx, train_values):
                    values[i] = t
                # the optimizer's values too: LossScaleOptimizer.scale_loss reads its dynamic scale, which would
                # otherwise be traced as the constant initial value (fp16 then skips every step)
                mapping = list(zip(net_vars, values)) + list(zip(opt_vars[phase], opt_state))
                with keras.StatelessScope(state_mapping=mapping) as scope:
                    total, terms, handoff = task.phase_losses(phase, batch, carry)
                    scaled = opt.scale_loss(total) if hasattr(opt, "scale_loss") else total
                # non-trainable updates made during the call (BatchNorm statistics, seed generators)
                updated = []
                for v, old in zip(net_vars, values):
                    new = scope.get_current_value(v)
                    updated.append(old if new is None else new)
                return scaled, (total, terms, updated, handoff)

            opt = task.optimizers[phase]
            train_values = [net_values[i] for i in idx]
            (_, (total, terms, updated, handoff)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                train_values, net_values)
            carry = dict(carry, **{k: jax.lax.stop_gradient(v) for k, v in handoff.items()})
            if grad_transform is not None:
                grads = grad_transform(phase, grads)
            new_train, opt_values[phase] = opt.stateless_apply(opt_values[phase], grads, train_values)
            net_values = updated
            for i, t in zip(idx, new_train):
                net_values[i] = t
            logs[loss_key(task, phase)] = total
            logs.update(terms)
        return net_values, opt_values, logs

    fn = jax.jit(pure) if jit_compile is None or jit_compile else pure

    def step(batch):
        net_values = [v.value for v in net_vars]
        opt_values = {p: [v.value for v in opt_vars[p]] for p in phases}
        net_values, opt_values, logs = fn(net_values, opt_values, batch)
        for v, value in zip(net_vars, net_values):
            v.assign(value)
        for p in phases:
            for v, value in zip(opt_vars[p], opt_values[p]):
                v.assign(value)
        return logs

    return step


def _torch_step(task, grad_transform):
    import torch

    all_vars = _unique_variables(task)

    def step(batch):
        batch = {k: keras.ops.convert_to_tensor(v) for k, v in batch.items()}
        logs, carry = {}, {}
        for phase in task.phases:
            opt = task.optimizers[phase]
            variables = task.trainable_variables(phase)
            for v in all_vars:  # the previous phase's backward also reached this network's weights
                v.value.grad = None
            total, terms, handoff = task.phase_losses(phase, batch, carry)
            scaled = opt.scale_loss(total) if hasattr(opt, "scale_loss") else total
            scaled.backward()
            carry.update({k: v.detach() for k, v in handoff.items()})
            grads = [v.value.grad for v in variables]
            if grad_transform is not None:
                grads = grad_transform(phase, grads)
            with torch.no_grad():
                opt.apply(grads, variables)
            logs[loss_key(task, phase)] = total.detach()
            logs.update({k: t.detach() for k, t in terms.items()})
        return logs

    return step


def make_ema_update(decay):
    """update(averages, values) -> new averages, avg = decay * avg + (1 - decay) * value for float tensors,
    compiled per backend so the moving average stays on the device (no host copy of the weights per step)."""
    d = float(decay)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(reduce_retracing=True)
        def update(averages, values):
            return [a * d + tf.cast(v, a.dtype) * (1.0 - d) for a, v in zip(averages, values)]

        return update
    if backend == "jax":
        import jax

        return jax.jit(lambda averages, values: [a * d + v * (1.0 - d) for a, v in zip(averages, values)])
    if backend == "torch":
        import torch

        def update(averages, values):
            with torch.no_grad():
                return [a * d + v.detach() * (1.0 - d) for a, v in zip(averages, values)]

        return update
    return lambda averages, values: [a * d + v * (1.0 - d) for a, v in zip(averages, values)]
