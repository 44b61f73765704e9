"""Everything train.py sets up before the first step: the datasets of a resolved config (numpy only, before
Keras starts), the network, its task (networks, optimizers, losses), its initial weights, the run directory
and the checkpoint saver. train.py parses the command line and calls these in order."""
import os
import time

from training import config as schema
from utils import UserError, ensure_writable_dir

NIQE_MIN = 96  # NIQE's 96x96 block grid (metrics/niqe.py): a smaller validation crop has no block to score


def make_run_dir(outdir):
    """A new timestamped run directory (with models/) under `outdir`."""
    ensure_writable_dir(outdir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = os.path.join(outdir, stamp)
    n = 1
    while os.path.exists(run_dir):  # two runs started within the same second
        run_dir = os.path.join(outdir, f"{stamp}-{n}")
        n += 1
    os.makedirs(os.path.join(run_dir, "models"))
    return run_dir


def check_monitor(config):
    """An unknown --monitor, or NIQE on validation crops too small for it, fails before any training."""
    if config["monitor"] == "psnr":
        return
    import metrics

    metrics.get_metric(config["monitor"])
    side = config["lr_patch"] * config["scale"]
    if config["monitor"].startswith("niqe") and not config["benchmark"] and side < NIQE_MIN:
        raise UserError(f"--monitor {config['monitor']} needs validation crops of at least {NIQE_MIN} px; "
                        f"--lr-patch {config['lr_patch']} x --scale {config['scale']} gives {side}: use --lr-patch "
                        f"{-(-NIQE_MIN // config['scale'])} or more, or --benchmark (whole validation images)")


def load_datasets(config):
    """(training batch source, validation pairs) of a config; numpy only, before Keras starts."""
    import numpy as np

    import data
    import imaging
    from degradations.batches import reference_batches
    from degradations.transforms import hr_patch_of, make_transform

    scale = config["scale"]
    common = dict(batch_size=config["batch_size"], lr_patch=config["lr_patch"], augment=True, seed=config["seed"],
                  steps=config["steps_per_epoch"])
    transform = make_transform(config["lr_transform"], scale, config)
    if transform is None:
        train_pairs = data.open_pairs(config["dataset"], scale, subset="train", downgrade=config["downgrade"],
                                      images=config["training_images"])
        train = data.Patches(train_pairs, scale, **common)
        valid_pairs = data.open_pairs(config["dataset"], scale, subset="valid", downgrade=config["downgrade"],
                                      images=config["validation_images"])
    else:
        hr = data.open_hr_images(config["dataset"], subset="train", images=config["training_images"])
        hr_patch = hr_patch_of(transform)
        if hr_patch:  # Real-ESRGAN's recipe (--realesrgan-crop): 400 px patches; the transform flips, pads, crops
            common.update(hr_patch=hr_patch, augment=False, smaller_ok=True)
        # Real-ESRGAN's per-batch draws and pair pool when the degradation options ask for them (exact on resume)
        train = reference_batches(data.HRPatches(hr, scale, transform, **common))
        valid_hr = data.open_hr_images(config["dataset"], subset="valid", images=config["validation_images"]) \
            if os.path.isdir(os.path.join(config["dataset"], "DIV2K_valid_HR")) else hr[-1:]
        # validation LR images by the same transform with a fixed generator per image (a fixed set); a whole-image
        # mode (Real-ESRGAN: no crop, no sharpened GT to make) where the transform has one
        degrade_whole = getattr(transform, "whole_image", transform)
        valid_pairs = []
        for k, path in enumerate(valid_hr):
            img = imaging.resize.modcrop(imaging.read_image(path), scale)
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
    """The task of a config: a GAN task (training/gan.py) for --trainer-task realesrgan, else the PixelTask with
    the factory's optimizer, the pixel / GRAM loss and EMA."""
    if config.get("trainer_task") == "realesrgan":  # Real-ESRNet / Real-ESRGAN / A-ESRGAN
        from training.gan import make_gan_task

        return make_gan_task(config, network)
    from optimizer import make_optimizer
    from training.task import PixelTask, gram_loss

    return PixelTask(network, make_optimizer(config, "generator"), gram_loss(config),
                     ema_decay=config["ema_decay"] if config["ema"] else None, weight=config["pixel_weight"])


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

        import profiles

        names = transfer_weights(network, config["pretrained_model"], profiles=profiles.PROFILES)
        print(f"initialised {len(names)} layers from {config['pretrained_model']}")
    elif config.get("weightnorm") and config.get("num_init_batches"):
        from model import weightnorm_data_init

        batches = [train.batch(0, i)["lr"] for i in range(config["num_init_batches"])]
        weightnorm_data_init(network, batches, config["num_init_batches"])
    if config.get("bicubic_init") and not config.get("pretrained_model"):
        from model.bicubic_init import init_bicubic

        init_bicubic(network)


def resume_config(args):
    """(run_dir, config, state) of `--resume RUN_DIR` with --epochs / --workers applied; state None when the run
    has nothing left to do (a line says so)."""
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
            return run_dir, config, None
        if args.epochs != config["epochs"]:
            config["epochs"] = args.epochs  # extend (or shorten) the run
            ensure_writable_dir(run_dir)
            schema.write_args(run_dir, config)
    if args.workers is not None:
        config["workers"] = schema.OPTIONS["workers"].check(args.workers, "command line")
    if finished >= config["epochs"]:
        print(f"{run_dir} already finished {config['epochs']} epochs")
        return run_dir, config, None
    return run_dir, config, state
