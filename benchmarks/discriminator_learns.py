"""Does the attention U-Net discriminator learn? G frozen as bicubic interpolation, a small D, a short CPU run.

Real = HR crops of the sample training images; fake = the "generator" output for their LR: MATLAB-bicubic
downscaling by 4 then bicubic upscaling by 4 (a frozen G that gives blurry, edge-less images). D (attention U-Net,
`--num-feat` wide) trains with the GAN's D loss, BCE(D(real), 1) + BCE(D(fake), 0), Adam (0.9, 0.99), on the
trainer (one phase). Saves D before training (epoch-000) and after every epoch in RUN/models/discriminator/ so
`python -m visualization.attention_maps --run RUN` draws the attention maps over training time. Prints the mean
sigmoid on real minus fake on held-out crops (validation images; D in inference mode): > 0.2 is the target.

    python benchmarks/discriminator_learns.py --outdir /tmp/dlearns [--figures docs/images]
"""
import argparse
import os
import time

import numpy as np


from utils import run_cli  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class BicubicFake:
    """transform(hr_crop, rng) -> {"lr", "hr", "fake"}: the frozen 'generator' is bicubic x4 of bicubic /4."""

    def __call__(self, hr, rng=None):
        from imaging.resize import imresize

        lr = imresize(hr, scale=0.25)
        fake = imresize(lr, scale=4.0)
        return {"lr": lr.astype(np.float32), "hr": hr.astype(np.float32), "fake": fake.astype(np.float32)}


def make_task(d, learning_rate):
    from losses.adversarial import gan_loss, mean_probability
    from training.gan import basicsr_adam
    from training.task import Task

    class DiscriminatorTask(Task):
        primary = "discriminator"

        def compute_losses(self, phase, batch, training=True):
            net = self.networks["discriminator"]
            real, fake = net(batch["hr"], training=True), net(batch["fake"], training=True)
            terms = {"d_loss_real": gan_loss(real, True), "d_loss_fake": gan_loss(fake, False),
                     "d_real": mean_probability(real), "d_fake": mean_probability(fake)}
            return terms["d_loss_real"] + terms["d_loss_fake"], terms

    return DiscriminatorTask({"discriminator": d}, {"discriminator": basicsr_adam(learning_rate)})


def held_out(d, crops):
    import keras

    from losses.adversarial import mean_probability

    fake = BicubicFake()
    real = np.stack([c.astype(np.float32) for c in crops])
    fakes = np.stack([fake(c)["fake"] for c in crops])
    p_real = float(keras.ops.convert_to_numpy(mean_probability(d(real, training=False))))
    p_fake = float(keras.ops.convert_to_numpy(mean_probability(d(fakes, training=False))))
    return p_real, p_fake


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--outdir", default="/tmp/discriminator_learns", help="run directory (created)")
    p.add_argument("--epochs", type=int, default=4, help="epochs (one D checkpoint each)")
    p.add_argument("--steps-per-epoch", type=int, default=50, help="steps per epoch")
    p.add_argument("--batch-size", type=int, default=8, help="batch size")
    p.add_argument("--crop", type=int, default=64, help="HR crop size (a multiple of 8)")
    p.add_argument("--num-feat", type=int, default=16, help="discriminator width (64 in A-ESRGAN)")
    p.add_argument("--learning-rate", type=float, default=2e-4, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--figures", default=None, help="also write the attention-map pictures into this folder")
    args = p.parse_args(argv)

    import keras

    import data
    import model
    from imaging.io import read_image
    from training.gan import GANTrainer
    from utils import atomic_path, ensure_writable_dir

    keras.utils.set_random_seed(args.seed)
    run_dir = ensure_writable_dir(args.outdir)
    hr = data.open_hr_images(os.path.join(ROOT, "sample"), subset="train")
    source = data.HRPatches(hr, 4, BicubicFake(), batch_size=args.batch_size, lr_patch=args.crop // 4, seed=args.seed,
                            steps=args.steps_per_epoch)
    d = model.build_discriminator("attention-unet", num_feat=args.num_feat)
    first = os.path.join(run_dir, "models", "discriminator", "epoch-000.keras")
    with atomic_path(first) as tmp:
        d.save(tmp)
    task = make_task(d, args.learning_rate)
    trainer = GANTrainer(task, source, run_dir, args.epochs, args.steps_per_epoch, validation=None,
                         jit_compile=False, tensorboard=False)
    start = time.perf_counter()
    history = trainer.fit()
    seconds = time.perf_counter() - start

    valid = [read_image(p) for p in data.open_hr_images(os.path.join(ROOT, "sample"), subset="valid")]
    rng = np.random.default_rng(1)
    crops = []
    for img in valid:
        for _ in range(8):
            y, x = rng.integers(0, img.shape[0] - args.crop), rng.integers(0, img.shape[1] - args.crop)
            crops.append(img[y: y + args.crop, x: x + args.crop])
    p_real, p_fake = held_out(d, crops)
    steps = args.epochs * args.steps_per_epoch
    print(f"attention-unet num_feat {args.num_feat}, {steps} steps of batch {args.batch_size} x {args.crop}px on "
          f"{keras.backend.backend()} CPU in {seconds:.0f} s ({seconds / steps:.2f} s/step)")
    print(f"last epoch (training batches): D(real) {history[-1]['d_real']:.3f}  D(fake) {history[-1]['d_fake']:.3f}")
    print(f"held-out crops ({len(crops)}): mean sigmoid real {p_real:.3f} - fake {p_fake:.3f} = {p_real - p_fake:.3f}")
    if args.figures:
        from visualization.attention_maps import checkpoints_of, write_grid, write_one

        image = valid[-1][112:368, 232:488]  # 0803, the motorcycle: edges and flat areas
        write_grid(checkpoints_of(run_dir), image, os.path.join(args.figures, "attention_over_training.png"),
                   max_side=128)
        out = os.path.join(run_dir, "maps")
        write_one(d, image, out)
        import shutil

        shutil.copyfile(os.path.join(out, "overview.png"), os.path.join(args.figures, "attention_maps_overview.png"))
        print(f"figures in {args.figures}")
    return 0


if __name__ == "__main__":
    run_cli(main)
