"""Train EDSR / WDSR / SRResNet / RRDBNet models (optionally with GRAM uncertainty): a thin CLI.

CLI (this file) -> configuration (training/config.py: the one option schema, profiles.py) -> trainer
(training/trainer.py: loop, EMA, validation, checkpoints, exact resume) -> model/, data.py, losses/, metrics/.

Examples:
    python train.py --profile wdsr-a-8 --scale 2
    python train.py --dataset ./DIV2K_BIN --outdir ./output --profile wdsr-a-8 --scale 4 \\
        --pretrained-model ./output/20181016-063620/models/epoch-294-psnr-34.5394.keras
    python3 train.py -p=sr-resnet -s=4 --pred_logvar --attention --block_attention_gradient \\
        -o ./output/logvar_attention_grad_rescale
    python train.py --profile wdsr-b-32 --scale 2 --print-model-summary --dry-run
    python train.py --resume ./output/20240101-120000
"""
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN kernels were the fastest TensorFlow CPU setting in benchmarks/train_speed.py (TF enables them by itself
# only on AVX-512/AMX CPUs); must be set before TensorFlow is imported. A user's own setting wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from training import config as schema  # noqa: E402  (no Keras import: checks run before TensorFlow starts)
from utils import UserError, ensure_writable_dir, run_cli  # noqa: E402


def build_parser(argv=None):
    """The parser of the schema (kept for callers of train.build_parser)."""
    return schema.build_parser(argv)


def resolve_config(args):
    """Profile defaults merged with command-line overrides, as one flat dict (what args.json records)."""
    return schema.resolve(args)


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


def load_datasets(config):
    """(training batch source, validation pairs) of a config; numpy only, before Keras starts."""
    import data

    scale = config["scale"]
    common = dict(batch_size=config["batch_size"], lr_patch=config["lr_patch"], augment=True, seed=config["seed"],
                  steps=config["steps_per_epoch"])
    transform = data.make_transform(config["lr_transform"], scale, config)
    if transform is None:
        train_pairs = data.open_pairs(config["dataset"], scale, subset="train", downgrade=config["downgrade"],
                                      images=config["training_images"])
        train = data.Patches(train_pairs, scale, **common)
        valid_pairs = data.open_pairs(config["dataset"], scale, subset="valid", downgrade=config["downgrade"],
                                      images=config["validation_images"])
    else:
        hr = data.open_hr_images(config["dataset"], subset="train", images=config["training_images"])
        hr_patch = data.hr_patch_of(transform)
        if hr_patch:  # Real-ESRGAN's recipe (--realesrgan-crop): 400 px patches; the transform flips, pads, crops
            common.update(hr_patch=hr_patch, augment=False, smaller_ok=True)
        train = data.HRPatches(hr, scale, transform, **common)
        valid_hr = data.open_hr_images(config["dataset"], subset="valid", images=config["validation_images"]) \
            if os.path.isdir(os.path.join(config["dataset"], "DIV2K_valid_HR")) else hr[-1:]
        # validation LR images by the same transform with a fixed generator per image (a fixed set); a whole-image
        # mode (Real-ESRGAN: no crop, no sharpened GT to make) where the transform has one
        import numpy as np

        degrade_whole = getattr(transform, "whole_image", transform)
        valid_pairs = []
        for k, path in enumerate(valid_hr):
            img = data.modcrop(data.read_image(path), scale)
            out = degrade_whole(img, np.random.default_rng([config["seed"], k]))
            valid_pairs.append(data.Pair(os.path.splitext(os.path.basename(path))[0],
                                         np.asarray(out["lr"]).round().clip(0, 255).astype(np.uint8), img))
    if config["benchmark"]:
        valid = valid_pairs
    else:
        valid = data.validation_crops(valid_pairs, scale, count=config["validation_steps"],
                                      lr_patch=config["lr_patch"], seed=config["seed"])
    return train, valid


def build_network(config):
    from model import build_model

    return build_model(config["arch"], config["scale"], **schema.model_params(config))


def make_task(config, network):
    """The PixelTask of a config: the profile's optimizer and schedule, the pixel / GRAM loss, EMA."""
    if config.get("trainer_task") == "realesrgan":  # Real-ESRNet / Real-ESRGAN / A-ESRGAN (training/gan.py)
        from training.gan import make_gan_task

        return make_gan_task(config, network)
    from optimizer import make_optimizer
    from training.task import PixelTask, gram_loss

    from training.distribute import loss_scaled

    opt = loss_scaled(make_optimizer(**schema.optimizer_params(config)), config.get("mixed_precision"))
    loss = gram_loss(config)
    return PixelTask(network, opt, loss, ema_decay=config["ema_decay"] if config["ema"] else None,
                     weight=config["pixel_weight"])


def checkpoint_saver(task):
    """save(network, path): the network compiled with its loss, so the .keras file records the loss mode
    (losses.checkpoint_loss_mode). The optimizer state is in the run's resume-*.npz, not here: a stateless SGD
    placeholder keeps the file small and `load_model(compile=True)` warning-free."""
    from training.distribute import float32_network

    def save(network, path):
        network = float32_network(network)  # mixed precision: published checkpoints compute in float32
        if getattr(network, "loss", None) is not task.loss:
            network.compile(optimizer="sgd", loss=task.loss, jit_compile=False)
        network.save(path)

    return save


def initialise(network, config, train):
    """Weights before the first step: --pretrained-model, weight-norm data init, or --bicubic-init."""
    if config.get("pretrained_model"):
        from model import transfer_weights

        names = transfer_weights(network, config["pretrained_model"])
        print(f"initialised {len(names)} layers from {config['pretrained_model']}")
    elif config.get("weightnorm") and config.get("num_init_batches"):
        from model import weightnorm_data_init

        batches = [train.batch(0, i)["lr"] for i in range(config["num_init_batches"])]
        weightnorm_data_init(network, batches, config["num_init_batches"])
    if config.get("bicubic_init") and not config.get("pretrained_model"):
        from model.bicubic_init import init_bicubic

        init_bicubic(network)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = schema.build_parser(argv).parse_args(argv)
    state = None
    if args.resume:
        from training.trainer import read_state

        schema.check_resume(args)
        run_dir = os.path.abspath(args.resume)
        config = schema.read_args(run_dir)
        state = read_state(run_dir)
        finished = int(state["epoch"])
        if args.epochs is not None:
            schema.OPTIONS["epochs"].check(args.epochs, "command line")
            if args.epochs <= finished:
                print(f"{run_dir} already finished {finished} epochs (asked for {args.epochs}); nothing to do")
                return run_dir
            if args.epochs != config["epochs"]:
                config["epochs"] = args.epochs  # extend (or shorten) the run
                ensure_writable_dir(run_dir)
                schema.write_args(run_dir, config)
        if args.workers is not None:
            config["workers"] = schema.OPTIONS["workers"].check(args.workers, "command line")
        if finished >= config["epochs"]:
            print(f"{run_dir} already finished {config['epochs']} epochs")
            return run_dir
    else:
        config = schema.resolve(args)
    dry_run = bool(args.dry_run) and not args.resume
    # Open the dataset before TensorFlow starts: a wrong --dataset is then a one-line error, not one after
    # TensorFlow's start-up notices (the oneDNN one ignores TF_CPP_MIN_LOG_LEVEL). Loaders use their own seeds.
    train, valid = (None, None) if dry_run else load_datasets(config)
    if not dry_run and config["monitor"] != "psnr":
        import metrics

        metrics.get_metric(config["monitor"])  # an unknown --monitor fails here, before any training
    import keras

    from training import distribute

    # devices and processes first: JAX's processes join before any computation, TF's devices before it starts
    dist = distribute.from_options(args.devices, args.coordinator, args.num_processes, args.process_id)
    dist.per_device_batch(config["batch_size"])
    distribute.set_mixed_precision(config.get("mixed_precision"))
    keras.utils.set_random_seed(config["seed"])
    with dist.scope():
        network = build_network(config)
        if config.get("mixed_precision") not in (None, "none"):
            distribute.keep_outputs_float32(network)
    if args.print_model_summary:
        from model import describe

        print(describe(network))
        if config.get("trainer_task") == "realesrgan":
            from training.gan import describe_discriminator

            text = describe_discriminator(config)
            if text:
                print(text)
    if dry_run:
        return None

    from training.speed import default_jit_compile
    from training.trainer import Trainer, Validation

    with dist.scope():
        task = make_task(config, network)
    if config.get("mixed_precision") not in (None, "none"):
        for net in task.networks.values():  # a GAN's discriminator too: its logits and the losses in float32
            distribute.keep_outputs_float32(net)
    jit = config["jit_compile"]
    if jit is None:
        jit = default_jit_compile()
    if state is None:
        initialise(network, config, train)
        if dist.is_chief:
            run_dir = make_run_dir(config["outdir"])
            schema.write_args(run_dir, config)
            print(f"run directory: {run_dir}")
        else:  # only process 0 writes; this name is never created
            run_dir = os.path.join(config["outdir"], f".process-{dist.process_index}")
    if dist.active and dist.is_chief:
        print(f"data parallel: {dist.describe()}, {dist.per_device_batch(config['batch_size'])} samples per device")
    validation = Validation(valid, config["scale"], monitor=config["monitor"], shave=0,
                            loss_mode=config["loss_mode"] if config["pred_logvar"] else "l2")
    trainer_class = getattr(task, "trainer_class", None) or Trainer  # GAN tasks also save D (training/gan.py)
    trainer = trainer_class(task, dist.shard_data(train, config["batch_size"]), run_dir, config["epochs"],
                      config["steps_per_epoch"], validation=validation, jit_compile=jit, workers=config["workers"],
                      save_best_only=config["save_best_models_only"], save_model=checkpoint_saver(task),
                      distribution=dist)
    if state is not None:
        trainer.load_state(state)
        print(f"resuming {run_dir} at epoch {trainer.epoch + 1}, step {trainer.step} "
              f"(optimizer step {trainer.global_step})")
    trainer.fit()
    best = f"best validation {config['monitor']} {trainer.best:.4f}" if trainer.best is not None else "no validation"
    print(f"done: checkpoints in {os.path.join(run_dir, 'models')} ({best}, XLA {'on' if jit else 'off'})")
    return run_dir


if __name__ == "__main__":
    run_cli(main)
