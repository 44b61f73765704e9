"""Train EDSR / WDSR / SRResNet models (optionally with GRAM uncertainty) on DIV2K-layout datasets.

Examples:
    python train.py --profile wdsr-a-8 --scale 2
    python train.py --dataset ./DIV2K_BIN --outdir ./output --profile wdsr-a-8 --scale 4 \\
        --pretrained-model ./output/20181016-063620/models/epoch-294-psnr-34.5394.keras
    python3 train.py -p=sr-resnet -s=4 --pred_logvar --attention --block_attention_gradient \\
        -o ./output/logvar_attention_grad_rescale
    python train.py --profile wdsr-b-32 --scale 2 --print-model-summary --dry-run
    python train.py --resume ./output/20240101-120000
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN kernels were the fastest TensorFlow CPU setting in benchmarks/train_speed.py (TF enables them by itself
# only on AVX-512/AMX CPUs); must be set before TensorFlow is imported. A user's own setting wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from utils import UserError, atomic_path, ensure_writable_dir, run_cli, warn  # noqa: E402

RUN_STATE = "state.json"


def build_parser():
    p = argparse.ArgumentParser(
        description="Train a super-resolution model. Profile values are defaults; any option given here overrides them.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("model")
    g.add_argument("-p", "--profile", default="wdsr-a-8", help="named profile from profiles.py (model + training hyper-parameters)")
    g.add_argument("-s", "--scale", type=int, default=2, choices=[2, 3, 4], help="super-resolution factor")
    g.add_argument("--num-filters", type=int, help="feature channels of the residual body (overrides the profile)")
    g.add_argument("--num-res-blocks", type=int, help="number of residual blocks (overrides the profile)")
    g.add_argument("--res-expansion", type=int, help="WDSR width expansion ratio r (A default 4, B default 6)")
    g.add_argument("--res-scaling", type=float, help="residual scaling inside each block (EDSR full uses 0.1)")
    g.add_argument("--weightnorm", action=argparse.BooleanOptionalAction, default=None,
                   help="weight-normalised convolutions (WDSR profiles default on)")
    g.add_argument("--num-init-batches", type=int,
                   help="batches for weight norm's data-dependent initialisation (0 = off)")
    g.add_argument("--bicubic-init", action="store_true",
                   help="WDSR only: start as bicubic interpolation (skip branch = bicubic kernel, main branch "
                        "output zero) so short runs improve on interpolation from the first steps")
    g.add_argument("--pretrained-model", help="initialise layers of the same name and shape from this .keras checkpoint "
                                              "(e.g. a x2 model for a x4 run: scale layers are left fresh)")
    g.add_argument("--pred-logvar", "--pred_logvar", "-plv", dest="pred_logvar", action="store_true",
                   help="GRAM: also predict a per-pixel log-variance (6-channel output) and train with the "
                        "heteroscedastic loss")
    g.add_argument("--attention", "-att", action="store_true",
                   help="GRAM: multiply the heteroscedastic loss by the mask sigmoid(logvar)")
    g.add_argument("--block-attention-gradient", "--block_attention_gradient", "-bag", dest="block_attention_gradient",
                   action="store_true", help="GRAM: stop the gradient through the attention mask (gradient rescaling)")
    g.add_argument("--loss-mode", "--loss_mode", dest="loss_mode", choices=["l1", "l2"], default="l2",
                   help="heteroscedastic loss: Laplace-like (l1) or Gaussian (l2) likelihood")
    g.add_argument("--print-model-summary", action="store_true", help="print the Keras model summary and parameter count")
    g.add_argument("--dry-run", action="store_true", help="build the model (and print it with --print-model-summary), "
                                                          "then exit without touching any dataset")

    g = p.add_argument_group("data")
    g.add_argument("-d", "--dataset", default="./DIV2K_BIN", help="DIV2K-layout dataset (PNG or converted .npy)")
    g.add_argument("--downgrade", default="bicubic",
                   help="LR degradation: bicubic, unknown, bicubic_jpeg_90, ... (folder DIV2K_*_LR_<downgrade>)")
    g.add_argument("--training-images", default="1-800", help="image ids used for training")
    g.add_argument("--validation-images", default="801-900", help="image ids used for validation")
    g.add_argument("--lr-patch", type=int, help="LR patch size of training crops (HR patch = scale x this)")
    g.add_argument("--workers", type=int, default=1, help="data loader worker processes")

    g = p.add_argument_group("training")
    g.add_argument("-o", "--outdir", default="./output", help="a timestamped run directory is created in here")
    g.add_argument("--epochs", type=int, help="number of epochs")
    g.add_argument("--steps-per-epoch", type=int, help="training steps per epoch")
    g.add_argument("--validation-steps", type=int, default=100,
                   help="number of fixed random validation crops scored after each epoch")
    g.add_argument("--benchmark", action="store_true",
                   help="validate on the full validation images after each epoch (slow for big models)")
    g.add_argument("--batch-size", type=int, help="training batch size")
    g.add_argument("--loss", choices=["mae", "mse"], help="pixel loss of plain models (profile default)")
    g.add_argument("--learning-rate", type=float, help="initial learning rate")
    g.add_argument("--learning-rate-step-size", type=int, nargs="+", dest="lr_boundaries",
                   help="steps at which the learning rate is multiplied by --learning-rate-decay")
    g.add_argument("--learning-rate-decay", type=float, dest="lr_decay", help="step decay factor")
    g.add_argument("--ema", action="store_true", help="keep an exponential moving average of the weights "
                                                     "(saved checkpoints hold the averaged weights)")
    g.add_argument("--save-best-models-only", action="store_true",
                   help="only save a checkpoint when validation PSNR improves")
    g.add_argument("--seed", type=int, default=0, help="random seed for weights, crops and augmentation")
    g.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=None,
                   help="XLA-compile the train step (default: on for TensorFlow and JAX, measured fastest; see README)")
    g.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run; all options are taken from "
                                                       "RUN_DIR/args.json except --epochs, which extends the run")
    return p


# Options that a profile supplies when the command line leaves them unset.
MODEL_KEYS = ("num_filters", "num_res_blocks", "res_expansion", "res_scaling", "weightnorm")
TRAIN_KEYS = ("loss", "learning_rate", "lr_boundaries", "lr_decay", "batch_size", "lr_patch", "epochs",
              "steps_per_epoch", "num_init_batches")


def resolve_config(args):
    """Profile defaults merged with command-line overrides, as one flat dict (what args.json records)."""
    import profiles

    overrides = {k: getattr(args, k) for k in MODEL_KEYS + TRAIN_KEYS if getattr(args, k) is not None}
    if args.ema:
        overrides["ema"] = True
    if args.pred_logvar:
        overrides["pred_logvar"] = True
    profile = profiles.resolve(args.profile, **overrides)
    config = dict(vars(args))
    config.update(arch=profile["arch"], **profile["model"], **profile["train"])
    if not config["pred_logvar"] and (config["attention"] or config["block_attention_gradient"]):
        raise UserError("--attention and --block_attention_gradient need --pred_logvar")
    return config


def build(config):
    from model import build_model

    params = {k: config[k] for k in MODEL_KEYS + ("pred_logvar",) if config.get(k) is not None}
    return build_model(config["arch"], config["scale"], **params)


def compile_model(model, config):
    import keras

    import losses
    import metrics
    from optimizer import make_optimizer

    loss = losses.make_loss(config["loss"], pred_logvar=config["pred_logvar"], loss_mode=config["loss_mode"],
                            attention=config["attention"], block_attention_gradient=config["block_attention_gradient"])
    opt = make_optimizer("adam", learning_rate=config["learning_rate"], boundaries=config["lr_boundaries"],
                         decay=config["lr_decay"], ema=config["ema"])
    jit = config["jit_compile"]
    if jit is None:
        jit = default_jit_compile()
    model.compile(optimizer=opt, loss=loss, metrics=[metrics.psnr_metric], jit_compile=jit)
    return jit


def default_jit_compile():
    """XLA on for TensorFlow and JAX: with oneDNN it was the fastest CPU training setting measured
    (benchmarks/train_speed.py: 0.87x the PyTorch step time, against 0.94x without XLA); off for PyTorch."""
    import keras

    return keras.backend.backend() in ("tensorflow", "jax")


def make_run_dir(outdir):
    ensure_writable_dir(outdir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = os.path.join(outdir, stamp)
    n = 1
    while os.path.exists(run_dir):  # two runs started within the same second
        run_dir = os.path.join(outdir, f"{stamp}-{n}")
        n += 1
    os.makedirs(os.path.join(run_dir, "models"))
    return run_dir


def write_args(run_dir, config):
    with atomic_path(os.path.join(run_dir, "args.txt")) as tmp, open(tmp, "w") as f:
        for k in sorted(config):
            f.write(f"{k}={config[k]}\n")
    with atomic_path(os.path.join(run_dir, "args.json")) as tmp, open(tmp, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)


def read_state(run_dir):
    try:
        with open(os.path.join(run_dir, "args.json")) as f:
            config = json.load(f)
        with open(os.path.join(run_dir, RUN_STATE)) as f:
            state = json.load(f)
    except FileNotFoundError as e:
        raise UserError(f"cannot resume {run_dir}: {e.filename} is missing (not a train.py run directory, "
                        f"or it stopped before its first checkpoint)") from None
    except json.JSONDecodeError as e:
        raise UserError(f"cannot resume {run_dir}: corrupt run state ({e.msg}); start a new run") from None
    return config, state


def save_resumable(model, run_dir, epoch, best_psnr, tag=""):
    """Model with optimizer state under a new name, then state.json pointing at it, then older ones removed:
    a kill at any moment leaves a state file whose checkpoint exists and matches it."""
    import keras

    name = f"resume-{epoch:03d}{tag}.keras"
    with atomic_path(os.path.join(run_dir, name)) as tmp:
        model.save(tmp)
    step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    with atomic_path(os.path.join(run_dir, RUN_STATE)) as tmp, open(tmp, "w") as f:
        json.dump({"epoch": epoch, "best_psnr": best_psnr, "step": step, "checkpoint": name}, f)
    for old in os.listdir(run_dir):
        if old.startswith("resume-") and old.endswith(".keras") and old != name:
            os.remove(os.path.join(run_dir, old))


def load_datasets(config):
    import data

    scale = config["scale"]
    train_pairs = data.open_pairs(config["dataset"], scale, subset="train", downgrade=config["downgrade"],
                                  images=config["training_images"])
    valid_pairs = data.open_pairs(config["dataset"], scale, subset="valid", downgrade=config["downgrade"],
                                  images=config["validation_images"])
    train = data.PatchDataset(train_pairs, scale, batch_size=config["batch_size"], lr_patch=config["lr_patch"],
                              augment=True, seed=config["seed"], steps=config["steps_per_epoch"],
                              workers=config["workers"])
    if config["benchmark"]:
        valid = valid_pairs
    else:
        valid = data.validation_crops(valid_pairs, scale, count=config["validation_steps"],
                                      lr_patch=config["lr_patch"], seed=config["seed"])
    return train, valid


class Validation:
    """Per-epoch validation PSNR (RGB, as the seed), scored by evaluation.evaluate like bench.py does."""

    def __init__(self, valid, scale):
        self.valid, self.scale = valid, scale

    def __call__(self, model):
        import evaluation

        row = evaluation.evaluate(model, self.valid, self.scale, shave=0, progress=False)
        return row["psnr_rgb"]


def make_callbacks(run_dir, config, validation, start_best):
    import keras

    class EpochEnd(keras.callbacks.Callback):
        """Validates, saves the epoch checkpoint and the resumable state; runs before TensorBoard sees the logs."""

        def __init__(self):
            super().__init__()
            self.best = start_best
            self.epoch = None

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            if config["ema"]:
                swap_ema_weights(self.model)  # validate and publish the averaged weights
            val_psnr = float(validation(self.model))
            logs["val_psnr"] = val_psnr
            improved = self.best is None or val_psnr > self.best
            if improved:
                self.best = val_psnr
            if improved or not config["save_best_models_only"]:
                name = f"epoch-{epoch + 1:03d}-psnr-{val_psnr:.4f}.keras"
                with atomic_path(os.path.join(run_dir, "models", name)) as tmp:
                    self.model.save(tmp)
            if config["ema"]:
                swap_ema_weights(self.model)
            save_resumable(self.model, run_dir, epoch + 1, self.best)
            print(f"\nepoch {epoch + 1}: val_psnr {val_psnr:.4f} dB (best {self.best:.4f})", flush=True)

    callbacks = [EpochEnd()]
    try:
        import tensorflow  # noqa: F401  TensorBoard's writer needs it; JAX/PyTorch-only machines skip the logs
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"), write_graph=False))
    except ImportError:
        warn("TensorFlow is not installed: no TensorBoard logs for this run")
    return callbacks


def swap_ema_weights(model):
    """Exchange the model's weights with the optimizer's moving averages (Keras keeps them side by side)."""
    import keras

    opt = model.optimizer
    for var, average in zip(opt._trainable_variables, opt._model_variables_moving_average):
        current = keras.ops.convert_to_numpy(var)
        var.assign(average)
        average.assign(current)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.resume:
        config, state = read_state(args.resume)
        run_dir = args.resume
        ensure_writable_dir(run_dir)
        if args.epochs is not None and args.epochs != config["epochs"]:
            config["epochs"] = args.epochs  # extend (or shorten) a run
            write_args(run_dir, config)
    else:
        config, state = resolve_config(args), None
    dry_run = config.get("dry_run") and not args.resume
    # Open the dataset before TensorFlow starts: a wrong --dataset is then a one-line error, not one after
    # TensorFlow's start-up notices (the oneDNN one ignores TF_CPP_MIN_LOG_LEVEL). Loaders use their own seeds.
    train, valid = (None, None) if dry_run else load_datasets(config)
    import keras

    keras.utils.set_random_seed(config["seed"])

    if state is None:
        model = build(config)
        if config["print_model_summary"]:
            from model import describe

            print(describe(model))
        if dry_run:
            return None
        if config.get("pretrained_model"):
            from model import transfer_weights

            names = transfer_weights(model, config["pretrained_model"])
            print(f"initialised {len(names)} layers from {config['pretrained_model']}")
        elif config.get("weightnorm") and config.get("num_init_batches"):
            from model import weightnorm_data_init

            weightnorm_data_init(model, train, config["num_init_batches"])
        if config.get("bicubic_init") and not config.get("pretrained_model"):
            from model.bicubic_init import init_bicubic

            init_bicubic(model)
        jit = compile_model(model, config)
        run_dir = make_run_dir(config["outdir"])
        write_args(run_dir, config)
        initial_epoch, best = 0, None
        print(f"run directory: {run_dir}")
    else:
        from model import load_model

        model = load_model(os.path.join(run_dir, state["checkpoint"]), compile=True)
        if not getattr(model, "optimizer", None):
            raise UserError(f"{run_dir}/{state['checkpoint']} has no optimizer state; start a new run")
        initial_epoch, best = state["epoch"], state["best_psnr"]
        train.epoch = initial_epoch  # crops and augmentation continue the sequence of the interrupted run
        jit = model.jit_compile
        print(f"resuming {run_dir} at epoch {initial_epoch + 1} (optimizer step {state['step']})")
    if initial_epoch >= config["epochs"]:
        print(f"{run_dir} already finished {config['epochs']} epochs")
        return run_dir

    callbacks = make_callbacks(run_dir, config, Validation(valid, config["scale"]), best)
    try:
        model.fit(train, epochs=config["epochs"], initial_epoch=initial_epoch, callbacks=callbacks, verbose=1)
    except KeyboardInterrupt:
        done = callbacks[0].epoch or initial_epoch
        save_resumable(model, run_dir, done, callbacks[0].best, tag="-interrupted")
        print(f"\ninterrupted: saved a resumable checkpoint; continue with\n"
              f"  python train.py --resume {run_dir}", file=sys.stderr)
        raise
    print(f"done: checkpoints in {os.path.join(run_dir, 'models')} (best validation PSNR {callbacks[0].best:.4f} dB, "
          f"XLA {'on' if jit else 'off'})")
    return run_dir


if __name__ == "__main__":
    run_cli(main)
