"""The training loop: epochs x steps of a `Task`, EMA, validation, checkpoints, exact resume, logs.

Position, weights, optimizer state, EMA and the best score are the whole state of a run: `Trainer.save_state`
writes them to one `resume-EEE-SSSSSS.npz` (atomically), then `state.json` naming it, then removes the older
files, so a kill at any moment leaves a state.json whose file exists and matches it. Batches depend only on
(seed, epoch, index) (the data source's contract) and are drawn in index order, so a resumed run repeats
exactly what the uninterrupted one would have done.

Ctrl-C: the first one asks the loop to stop at the next safe point (after the current step, or between
validation images); the state at that exact position is saved and KeyboardInterrupt is raised (exit 130).
A second Ctrl-C aborts at once.
"""
import contextlib
import json
import math
import os
import signal
import sys
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from model.io import KERAS_EXTS
from utils import UserError, atomic_path, warn

STATE_FILE = "state.json"
KILL_ENV = "SISR_TEST_KILL"  # tests: "step:N" | "validation:N" | "checkpoint:N" [+ ":INT"] -> signal there


class _KillSwitch:
    """Test hook: send this process SIGKILL (or SIGINT with a ":INT" suffix) the N-th time a point is reached:
    "step" (after a train step returned, before it is counted), "validation" (after a validation image),
    "checkpoint" (a resume file written under its temporary name, not yet renamed)."""

    def __init__(self):
        parts = os.environ.get(KILL_ENV, "").split(":")
        self.where = parts[0]
        self.at = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        self.signal = signal.SIGINT if len(parts) > 2 and parts[2] == "INT" else signal.SIGKILL
        self.count = 0

    def __call__(self, where):
        if self.at is not None and where == self.where:
            self.count += 1
            if self.count == self.at:
                sys.stdout.flush()
                sys.stderr.flush()
                os.kill(os.getpid(), self.signal)


def _to_float(x):
    import keras

    return float(keras.ops.convert_to_numpy(x))


def _snapshot(variable):
    """A copy of a variable's current value as a backend tensor (detached from any autograd graph)."""
    import keras

    return keras.ops.copy(keras.ops.stop_gradient(variable.value))


class EMA:
    """Exponential moving average of a network's weights (all its variables, so BatchNorm statistics too):
    avg = decay * avg + (1 - decay) * w after every step, on the device (training.backend.make_ema_update);
    `swapped()` puts the averages into the network for validation / saving and always restores the trained
    weights (try/finally). `averages` is the numpy view (state files, publishing)."""

    def __init__(self, network, decay):
        import keras

        from training.backend import make_ema_update

        self.network, self.decay = network, float(decay)
        self.variables = list(network.weights)
        self._float = [keras.backend.is_float_dtype(v.dtype) for v in self.variables]
        self._avg = [_snapshot(v) for v in self.variables]
        self._update = make_ema_update(self.decay)

    @property
    def averages(self):
        import keras

        return [keras.ops.convert_to_numpy(a) for a in self._avg]

    @averages.setter
    def averages(self, arrays):
        import keras

        self._avg = [keras.ops.convert_to_tensor(np.asarray(a), dtype=v.dtype) for a, v in zip(arrays, self.variables)]

    def update(self):
        idx = [k for k, f in enumerate(self._float) if f]
        new = self._update([self._avg[k] for k in idx], [self.variables[k].value for k in idx])
        for k, a in zip(idx, new):
            self._avg[k] = a
        for k, f in enumerate(self._float):
            if not f:  # integer state (e.g. seed counters) is copied, not averaged
                self._avg[k] = _snapshot(self.variables[k])

    @contextlib.contextmanager
    def swapped(self):
        trained = [_snapshot(v) for v in self.variables]
        try:
            for v, avg in zip(self.variables, self._avg):
                v.assign(avg)
            yield self.network
        finally:
            for v, w in zip(self.variables, trained):
                v.assign(w)


class Validation:
    """Score a network on fixed (stem, lr uint8, hr uint8) pairs with a registered metric (metrics.registry).

    monitor "psnr" is the seed's number: RGB PSNR without shave (the metric psnr_rgb), named "psnr" in
    checkpoint names. `stop()` returning True ends the pass early (Ctrl-C) and returns None.
    """

    def __init__(self, pairs, scale, monitor="psnr", shave=0, loss_mode="l2", num_images=3):
        import metrics

        self.pairs, self.scale, self.shave, self.loss_mode = list(pairs), int(scale), int(shave), loss_mode
        self.name = monitor
        self.metric = metrics.get_metric("psnr_rgb" if monitor == "psnr" else monitor)
        self.num_images = num_images
        if not self.pairs:
            raise UserError("no validation images; check --validation-images and --validation-steps")

    def __call__(self, network, stop=lambda: False, hook=lambda: None):
        import imaging
        from evaluation import scorer

        predict = scorer.predictor(network, self.scale, loss_mode=self.loss_mode)
        scores, images = [], []
        for k, (stem, lr, hr) in enumerate(self.pairs):
            if stop():
                return None, images
            lr = imaging.read_image(lr) if not isinstance(lr, np.ndarray) else lr
            hr = imaging.read_image(hr) if not isinstance(hr, np.ndarray) else hr
            _, sr, hr, values = scorer.score_one(predict, lr, hr, self.scale, [self.metric.name], self.shave,
                                                 stem=stem)
            scores.append(values[self.metric.name])
            if k < self.num_images:
                h, w = sr.shape[:2]
                images.append(np.concatenate([_upscale_nearest(lr, self.scale)[:h, :w], sr, hr], axis=1))
            hook()
        return float(np.mean(scores)), images


def _upscale_nearest(img, scale):
    return np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)


class _Logs:
    """TensorBoard scalars and images via tf.summary when TensorFlow is importable (warns once otherwise)."""

    def __init__(self, log_dir):
        self.writers = None
        if log_dir is None:
            return
        try:
            import tensorflow as tf
        except ImportError:
            warn("TensorFlow is not installed: no TensorBoard logs for this run")
            return
        import keras

        if keras.backend.backend() != "tensorflow":
            try:  # TensorBoard's writer must not claim an accelerator another backend trains on
                tf.config.set_visible_devices([], "GPU")
            except (RuntimeError, ValueError):
                pass
        self.tf = tf
        self.writers = {name: tf.summary.create_file_writer(os.path.join(log_dir, name))
                        for name in ("train", "validation")}

    def scalars(self, which, values, step):
        if self.writers is None:
            return
        with self.writers[which].as_default(step=int(step)):
            for name, value in values.items():
                self.tf.summary.scalar(name, float(value))

    def images(self, which, name, images, step):
        if self.writers is None or not images:
            return
        with self.writers[which].as_default(step=int(step)):
            for k, img in enumerate(images):  # one summary each: full validation images differ in size
                self.tf.summary.image(f"{name}/{k}", img[None], max_outputs=1)

    def flush(self):
        if self.writers:
            for w in self.writers.values():
                w.flush()


def prefetch(fn, indices, workers):
    """Yield fn(i) for i in indices in order, computing up to 2 x workers ahead on `workers` threads."""
    indices = list(indices)
    if workers <= 0 or len(indices) <= 1:
        for i in indices:
            yield fn(i)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        ahead = 2 * workers
        futures = [pool.submit(fn, i) for i in indices[:ahead]]
        nxt = len(futures)
        for k in range(len(indices)):
            result = futures[k].result()
            futures[k] = None
            if nxt < len(indices):
                futures.append(pool.submit(fn, indices[nxt]))
                nxt += 1
            yield result


class Trainer:
    """Runs a Task for `epochs` x `steps_per_epoch` steps on batches from `data` into `run_dir`.

    data: an object with `batch(epoch, index) -> dict of float32 arrays` (data.Patches and data.HRPatches do
      this; each batch a function of (seed, epoch, index) only).
    validation: a `Validation` (or None); monitor direction from its metric.
    save_model(network, path): writes a published checkpoint (train.py adds the loss mode); default .save.
    ema: {network: decay} overrides task.ema. jit_compile: passed to training.backend.make_train_step.
    """

    def __init__(self, task, data, run_dir, epochs, steps_per_epoch, validation=None, jit_compile=False,
                 workers=1, save_best_only=False, save_model=None, tensorboard=True, progress=True,
                 grad_transform=None, log_every=1, distribution=None):
        self.task, self.data, self.run_dir = task, data, os.path.abspath(run_dir)
        self.epochs, self.steps_per_epoch = int(epochs), int(steps_per_epoch)
        self.validation, self.jit_compile, self.workers = validation, jit_compile, int(workers)
        self.save_best_only = save_best_only
        self.save_model = save_model or (lambda net, path: net.save(path))
        self.tensorboard, self.progress, self.log_every = tensorboard, progress, max(1, int(log_every))
        self.grad_transform = grad_transform
        from training.distribute import Distribution

        # devices / processes (training/distribute.py); only its chief validates, saves, logs, shows progress
        self.distribution = distribution or Distribution()
        self.chief = self.distribution.is_chief
        self.epoch, self.step, self.global_step, self.best = 0, 0, 0, None
        self.history = []
        self._epoch_train_means = {}  # the last epoch's mean training losses, for its history record
        self._stop = False
        self._kill = _KillSwitch()
        self._built = False
        self.ema = {}

    # ----- state -----------------------------------------------------------------------------------------
    def build(self):
        """Create all variables (networks, optimizers) and the EMA copies; idempotent."""
        if self._built:
            return
        with self.distribution.scope():  # TF: mirrored variables, optimizers made under the strategy
            self.task.build(self.data.batch(0, 0))
        self.ema = {name: EMA(self.task.networks[name], decay) for name, decay in self.task.ema.items()}
        self._built = True

    def _arrays(self):
        import keras

        out = {}
        for name, net in self.task.networks.items():
            for k, v in enumerate(net.weights):
                out[f"net/{name}/{k}"] = keras.ops.convert_to_numpy(v)
        for phase, opt in self.task.optimizers.items():
            for k, v in enumerate(opt.variables):
                out[f"opt/{phase}/{k}"] = keras.ops.convert_to_numpy(v)
        for name, ema in self.ema.items():
            for k, avg in enumerate(ema.averages):
                out[f"ema/{name}/{k}"] = avg
        return out

    def position(self):
        return {"epoch": self.epoch, "step": self.step, "global_step": self.global_step, "best": self.best}

    def save_state(self, tag=""):
        """Write the resumable state at the current position (see module doc); returns its file name."""
        name = f"resume-{self.epoch:03d}-{self.step:06d}{tag}.npz"
        if not self.chief:
            return name
        arrays = self._arrays()
        meta = dict(self.position(), checkpoint=name,
                    monitor=self.validation.name if self.validation else None)
        arrays["meta"] = np.array(json.dumps(meta))
        try:
            with atomic_path(os.path.join(self.run_dir, name)) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, **arrays)
                self._kill("checkpoint")  # tests: a kill while the state file is half-way to its name
            with atomic_path(os.path.join(self.run_dir, STATE_FILE)) as tmp, open(tmp, "w") as f:
                json.dump(meta, f, indent=1)
        except OSError as e:  # disk full, quota, read-only: the previous state (if any) is untouched
            raise UserError(f"cannot save the run state in {self.run_dir}: {e.strerror or e}; the last good state "
                            f"is {_last_good(self.run_dir)}: free space, then train.py --resume {self.run_dir}") from None
        for old in os.listdir(self.run_dir):
            if old.startswith("resume-") and old != name and old.endswith((".npz",) + KERAS_EXTS):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(self.run_dir, old))
        return name

    def load_state(self, state=None):
        """Restore weights, optimizer variables, EMA and position from run_dir's state.json (or `state`)."""
        if state is None:
            state = read_state(self.run_dir)
        self.build()
        path = os.path.join(self.run_dir, state["checkpoint"])
        stored = _open_state_file(self.run_dir, path)

        def restore(prefix, variables):
            for k, v in enumerate(variables):
                key = f"{prefix}/{k}"
                if key not in stored or tuple(stored[key].shape) != tuple(v.shape):
                    raise UserError(f"{path} does not match this run's networks ({key}); start a new run")
                v.assign(stored[key])

        try:
            with stored:
                for name, net in self.task.networks.items():
                    restore(f"net/{name}", net.weights)
                for phase, opt in self.task.optimizers.items():
                    restore(f"opt/{phase}", opt.variables)
                for name, ema in self.ema.items():
                    ema.averages = [np.array(stored[f"ema/{name}/{k}"]) for k in range(len(ema.variables))]
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:  # a damaged member
            raise UserError(f"cannot resume {self.run_dir}: the state file {os.path.basename(path)} is corrupt "
                            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unreadable'}); "
                            f"{_restart_hint(self.run_dir)}") from None
        self.epoch, self.step, self.global_step = state["epoch"], state["step"], state["global_step"]
        self.best = state.get("best")

    # ----- loop ------------------------------------------------------------------------------------------
    def _handle_sigint(self, signum, frame):
        if self._stop:
            raise KeyboardInterrupt
        self._stop = True
        print("\nstopping at the next safe point to save the exact position (Ctrl-C again to abort)",
              file=sys.stderr, flush=True)

    def fit(self):
        """Train from the current position to `epochs`; returns self.history (one dict per epoch)."""
        self.build()
        if self.chief:
            _remove_partial_files(self.run_dir)
        if not os.path.exists(os.path.join(self.run_dir, STATE_FILE)):
            self.save_state()  # resumable from the very start: a kill in epoch 1 loses nothing either
        # training.backend's step, per replica and placed on the devices when distributed
        step_fn = self.distribution.make_train_step(self.task, self.jit_compile, self.grad_transform)
        logs = _Logs(os.path.join(self.run_dir, "logs") if self.tensorboard and self.chief else None)
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, self._handle_sigint) if in_main else None
        try:
            while self.epoch < self.epochs:
                if self.step < self.steps_per_epoch:
                    self._run_epoch_steps(step_fn, logs)
                    if self._stop:
                        break
                self._end_epoch(logs)
                if self._stop:
                    break
        finally:
            if in_main:
                signal.signal(signal.SIGINT, previous)
            logs.flush()
        if self._stop:
            name = self.save_state("-interrupted")
            print(f"\ninterrupted at epoch {self.epoch + 1}, step {self.step} (optimizer step "
                  f"{self.global_step}): saved {name}; continue with\n  python train.py --resume {self.run_dir}",
                  file=sys.stderr, flush=True)
            raise KeyboardInterrupt
        return self.history

    def _run_epoch_steps(self, step_fn, logs):
        from tqdm import tqdm

        epoch = self.epoch
        bar = tqdm(total=self.steps_per_epoch, initial=self.step, desc=f"epoch {epoch + 1}/{self.epochs}",
                   unit="step", dynamic_ncols=True, disable=not (self.progress and self.chief), leave=True)
        sums, count = {}, 0
        lr_opt = self.task.optimizers[self.task.phases[0]]
        try:
            batches = prefetch(lambda i: self.data.batch(epoch, i), range(self.step, self.steps_per_epoch),
                               self.workers)
            for batch in batches:
                values = {k: _to_float(v) for k, v in step_fn(batch).items()}
                self._kill("step")
                bad = [k for k, v in values.items() if not math.isfinite(v)]
                if bad:
                    raise UserError(f"the loss became {values[bad[0]]} ({bad[0]}) at epoch {epoch + 1}, step "
                                    f"{self.step + 1}: training stopped; the last good state is kept in "
                                    f"{self.run_dir} ({_last_good(self.run_dir)}); lower --learning-rate and "
                                    f"start again (or --resume to retry from it)")
                # every process: the average is a computation on the (replicated) device arrays, which with
                # several processes spans all of them
                for ema in self.ema.values():
                    ema.update()
                self.step += 1
                self.global_step += 1
                count += 1
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                if self.global_step % self.log_every == 0:
                    logs.scalars("train", dict(values, learning_rate=_to_float(lr_opt.learning_rate)),
                                 self.global_step)
                bar.set_postfix({k: f"{s / count:.4g}" for k, s in sums.items()}, refresh=False)
                bar.update(1)
                if self._stop:
                    break
        finally:
            bar.close()
        self._epoch_train_means = {k: s / count for k, s in sums.items()} if count else {}

    def _end_epoch(self, logs):
        """Validate (EMA weights when kept), publish the epoch checkpoint, then save the resumable state."""
        epoch = self.epoch
        primary = self.task.networks[self.task.primary]
        score, images = None, []
        record = {"epoch": epoch + 1, **self._epoch_train_means}
        if not self.chief:  # the chief alone validates and publishes
            self.history.append(record)
            self.epoch, self.step = epoch + 1, 0
            return
        # EMA weights swapped in; a copy on this process alone when the devices span several processes
        with self.distribution.published(primary, self.ema.get(self.task.primary)) as primary:
            if self.validation is not None:
                score, images = self.validation(primary, stop=lambda: self._stop,
                                                hook=lambda: self._kill("validation"))
                if score is None:  # interrupted: the epoch end is redone on resume
                    return
                name = self.validation.name
                better = self.best is None or self.validation.metric.better(score, self.best)
                if better:
                    self.best = score
                record[f"val_{name}"] = score
                logs.scalars("validation", {name: score}, self.global_step)
                logs.images("validation", "sr", images, self.global_step)
                if better or not self.save_best_only:
                    path = os.path.join(self.run_dir, "models", f"epoch-{epoch + 1:03d}-{name}-{score:.4f}.keras")
                    with atomic_path(path) as tmp:
                        self.save_model(primary, tmp)
                msg = f"epoch {epoch + 1}: val_{name} {score:.4f} (best {self.best:.4f})"
            else:
                path = os.path.join(self.run_dir, "models", f"epoch-{epoch + 1:03d}.keras")
                with atomic_path(path) as tmp:
                    self.save_model(primary, tmp)
                msg = f"epoch {epoch + 1} done"
        self.history.append(record)
        self.epoch, self.step = epoch + 1, 0
        self.save_state()
        print(msg, flush=True)


def _remove_partial_files(run_dir):
    """Temporary files a killed run left behind (THE cleaner: imaging.files.remove_stale_temps)."""
    from imaging.files import remove_stale_temps

    remove_stale_temps(run_dir)


def _last_good(run_dir):
    try:
        with open(os.path.join(run_dir, STATE_FILE)) as f:
            return json.load(f)["checkpoint"]
    except (OSError, ValueError, KeyError):
        return "none yet: no epoch finished"


def read_state(run_dir):
    """state.json of a run directory; UserError when missing or corrupt."""
    path = os.path.join(run_dir, STATE_FILE)
    try:
        with open(path) as f:
            state = json.load(f)
    except FileNotFoundError:
        raise UserError(f"cannot resume {run_dir}: {path} is missing (not a train.py run directory, or it "
                        f"stopped before its first checkpoint)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"cannot resume {run_dir}: corrupt run state {path} ({e}); start a new run") from None
    if not isinstance(state, dict) or "checkpoint" not in state or "epoch" not in state:
        raise UserError(f"cannot resume {run_dir}: {path} is not a train.py state file; start a new run")
    for key in ("epoch", "step", "global_step"):
        value = state.get(key)
        if key in state and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise UserError(f"cannot resume {run_dir}: corrupt run state {path} ({key} is {value!r}, not a "
                            f"step count); start a new run")
    if not isinstance(state["checkpoint"], str) or os.path.basename(state["checkpoint"]) != state["checkpoint"]:
        raise UserError(f"cannot resume {run_dir}: corrupt run state {path} (checkpoint {state['checkpoint']!r}); "
                        f"start a new run")
    if state.get("best") is not None and (isinstance(state["best"], bool)
                                          or not isinstance(state["best"], (int, float))):
        raise UserError(f"cannot resume {run_dir}: corrupt run state {path} (best is {state['best']!r}); "
                        f"start a new run")
    if "global_step" not in state or not str(state["checkpoint"]).endswith(".npz"):
        raise UserError(f"cannot resume {run_dir}: it was written by an older train.py ({state['checkpoint']}); "
                        f"start a new run, e.g. with --pretrained-model {os.path.join(run_dir, 'models', '<last>.keras')}")
    return state


def _open_state_file(run_dir, path):
    """The resume-*.npz named by state.json, opened without pickles; UserError when missing or corrupt."""
    hint = _restart_hint(run_dir)
    try:
        stored = np.load(path, allow_pickle=False)
        if not isinstance(stored, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        stored.files  # noqa: B018  (reads the zip directory: a truncated file fails here)
        return stored
    except FileNotFoundError:
        raise UserError(f"cannot resume {run_dir}: its state file {path} is missing; {hint}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        what = "truncated or not an .npz archive" if isinstance(e, (zipfile.BadZipFile, EOFError)) or \
            "pickle" in str(e) else str(e)
        raise UserError(f"cannot resume {run_dir}: the state file {os.path.basename(path)} is corrupt ({what}); "
                        f"{hint}") from None


def _restart_hint(run_dir):
    """What to do when a run's only state file is unusable: its newest epoch checkpoint as a starting point."""
    models = os.path.join(run_dir, "models")
    names = sorted(n for n in os.listdir(models) if n.endswith(KERAS_EXTS)) if os.path.isdir(models) else []
    if names:
        return (f"no earlier state is kept; start a new run from its last checkpoint with --pretrained-model "
                f"{os.path.join(models, names[-1])}")
    return "no earlier state is kept; start a new run"
