"""Train EDSR / WDSR / SRResNet / RRDBNet models (optionally with GRAM uncertainty): a thin CLI.

CLI (this file: parse, then call) -> training/config.py (the one option schema and resolver; profiles.py) ->
training/setup.py (datasets, network, task, initial weights, run directory) -> training/trainer.py (loop, EMA,
validation, checkpoints, exact resume) -> model/, degradations/, data.py, losses/, metrics/, optimizer/.

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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN kernels were the fastest TensorFlow CPU setting in benchmarks/train_speed.py (TF enables them by itself
# only on AVX-512/AMX CPUs); must be set before TensorFlow is imported. A user's own setting wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from training import config as schema  # noqa: E402  (no Keras import: checks run before TensorFlow starts)
from training import setup  # noqa: E402
from utils import run_cli  # noqa: E402

build_parser = schema.build_parser  # the parser of the one schema (train.build_parser(argv))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = schema.build_parser(argv).parse_args(argv)
    state = None
    if args.resume:
        run_dir, config, state = setup.resume_config(args)
        if state is None:
            return run_dir
    else:
        config = schema.resolve(args)
    dry_run = bool(args.dry_run) and not args.resume
    # Open the dataset before TensorFlow starts: a wrong --dataset is then a one-line error, not one after
    # TensorFlow's start-up notices (the oneDNN one ignores TF_CPP_MIN_LOG_LEVEL). Loaders use their own seeds.
    if not dry_run:
        setup.check_monitor(config)  # an unknown --monitor, or NIQE on too small crops, fails before any work
    train, valid = (None, None) if dry_run else setup.load_datasets(config)
    import keras

    from training import distribute

    # devices and processes first: JAX's processes join before any computation, TF's devices before it starts
    dist = distribute.from_options(args.devices, args.coordinator, args.num_processes, args.process_id)
    dist.per_device_batch(config["batch_size"])
    distribute.set_mixed_precision(config.get("mixed_precision"))
    keras.utils.set_random_seed(config["seed"])
    with dist.scope():
        network = setup.build_network(config)
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
        task = setup.make_task(config, network)
    if config.get("mixed_precision") not in (None, "none"):
        for net in task.networks.values():  # a GAN's discriminator too: its logits and the losses in float32
            distribute.keep_outputs_float32(net)
    jit = config["jit_compile"]
    if jit is None:
        jit = default_jit_compile()
    if state is None:
        setup.initialise(network, config, train)
        if dist.is_chief:
            run_dir = setup.make_run_dir(config["outdir"])
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
                      save_best_only=config["save_best_models_only"], save_model=setup.checkpoint_saver(task),
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
