"""Named model + training profiles: inert data (imports nothing), as krasserm/wdsr's `train.py` and GRAM's.

Each profile: {"arch": ..., "model": {build_model params}, "train": {loss, optimizer and schedule, batches}}.
Every key is an option of the training schema (training/options.py); training/config.py checks every profile
against it (`check_profiles`: an unknown key or a bad value is an error) and resolves a profile with the command
line (`resolve`). Learning rates step-decay by `lr_decay` at `lr_boundaries` (optimizer steps): krasserm halves
every 200 epochs of 1000 steps, i.e. at 200k steps; 300 epochs in all.
"""

_TRAIN = {
    "loss": "mae",
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "lr_boundaries": [200000],
    "lr_decay": 0.5,
    "ema": False,
    "batch_size": 16,
    "lr_patch": 48,
    "epochs": 300,
    "steps_per_epoch": 1000,
    "num_init_batches": 0,
}


def _wdsr(block, num_res_blocks, res_expansion):
    return {
        "arch": f"wdsr-{block}",
        "model": {"num_filters": 32, "num_res_blocks": num_res_blocks, "res_expansion": res_expansion,
                  "res_scaling": None, "weightnorm": True, "pred_logvar": False},
        "train": {**_TRAIN, "learning_rate": 1e-3},
    }


def _edsr(num_filters, num_res_blocks, res_scaling=None):
    return {
        "arch": "edsr",
        "model": {"num_filters": num_filters, "num_res_blocks": num_res_blocks, "res_scaling": res_scaling,
                  "weightnorm": False, "pred_logvar": False},
        "train": {**_TRAIN, "learning_rate": 1e-4},
    }


def _realesrgan(discriminator, batch_size, learning_rate=1e-4, epochs=400):
    """BasicSR's train_realesrnet_x4plus / train_realesrgan_x4plus / A-ESRGAN's train_*aesrgan_x4plus.yml:
    Adam (0.9, 0.99) eps 1e-8, weight decay 0, G and D at the same rate, MultiStepLR halving at the last
    iteration (so constant), EMA 0.999; pixel L1 1.0, perceptual 1.0 and GAN 0.1 with a discriminator."""
    gan = {"discriminator": discriminator, "perceptual_weight": 1.0, "gan_weight": 0.1} if discriminator else {}
    return {
        "arch": "rrdbnet",
        "model": {"num_filters": 64, "num_res_blocks": 23, "growth_channels": 32, "pred_logvar": False},
        "train": {**_TRAIN, "trainer_task": "realesrgan", **gan,
                  "scale": 4, "lr_transform": "realesrgan", "realesrgan_crop": 400, "lr_patch": 64,
                  "batch_size": batch_size, "loss": "mae", "pixel_weight": 1.0,
                  "optimizer": "adam", "learning_rate": learning_rate, "beta_1": 0.9, "beta_2": 0.99,
                  "epsilon": 1e-8, "weight_decay": 0.0, "lr_boundaries": [epochs * 1000], "lr_decay": 0.5,
                  "ema": True, "ema_decay": 0.999, "epochs": epochs, "steps_per_epoch": 1000,
                  "usm_target": True},
    }


PROFILES = {
    # WDSR-B baseline (8 blocks as in the WDSR paper) and deeper variants; expansion 6.
    "wdsr-b-8": _wdsr("b", 8, 6),
    "wdsr-b-16": _wdsr("b", 16, 6),
    "wdsr-b-32": _wdsr("b", 32, 6),
    # WDSR-A; expansion 4 by default (the seed's experimental 3.55M models use --res-expansion 6).
    "wdsr-a-8": _wdsr("a", 8, 4),
    "wdsr-a-16": _wdsr("a", 16, 4),
    "wdsr-a-32": _wdsr("a", 32, 4),
    # EDSR baselines and the full EDSR (32 x 256, residual scaling 0.1).
    "edsr-8": _edsr(64, 8),
    "edsr-16": _edsr(64, 16),
    "edsr": _edsr(256, 32, 0.1),
    # SRResNet as trained by GRAM: MSE loss, Adam 1e-4.
    "sr-resnet": {
        "arch": "sr-resnet",
        "model": {"num_filters": 64, "num_res_blocks": 16, "weightnorm": False, "pred_logvar": False},
        "train": {**_TRAIN, "loss": "mse", "learning_rate": 1e-4},
    },
    # RRDBNet (ESRGAN / Real-ESRGAN generator, scales 4, 2, 1): Real-ESRNet's L1 pre-training, Adam 2e-4, EMA.
    "rrdbnet": {
        "arch": "rrdbnet",
        "model": {"num_filters": 64, "num_res_blocks": 23, "growth_channels": 32, "pred_logvar": False},
        "train": {**_TRAIN, "loss": "mae", "learning_rate": 2e-4, "ema": True, "lr_patch": 64},
    },
    # The same layer types at a test-sized width and depth.
    "rrdbnet-tiny": {
        "arch": "rrdbnet",
        "model": {"num_filters": 8, "num_res_blocks": 1, "growth_channels": 4, "pred_logvar": False},
        "train": {**_TRAIN, "loss": "mae", "learning_rate": 2e-4, "lr_patch": 16},
    },
    # SRVGGNetCompact (Real-ESRGAN's compact model at realesr-general-x4v3's size: 64 features, num_conv 32 =
    # num_res_blocks; realesr-animevideov3 is --num-res-blocks 16) and BasicSR's MSRResNet (train_MSRResNet_x4.yml:
    # L1, Adam 2e-4, 32px LR patches): L1 pre-training like rrdbnet.
    "srvgg-compact": {
        "arch": "srvgg-compact",
        "model": {"num_filters": 64, "num_res_blocks": 32, "pred_logvar": False},
        "train": {**_TRAIN, "loss": "mae", "learning_rate": 2e-4, "ema": True, "lr_patch": 64},
    },
    "msrresnet": {
        "arch": "msrresnet",
        "model": {"num_filters": 64, "num_res_blocks": 16, "pred_logvar": False},
        "train": {**_TRAIN, "loss": "mae", "learning_rate": 2e-4, "lr_patch": 32},
    },
    # Real-ESRNet / Real-ESRGAN / A-ESRGAN (training/gan.py; values from the sources' configs, batch = per GPU
    # of their 4): x4 RRDBNet on 256px GT crops of 400px HR patches degraded on the fly (realesrgan_crop), L1
    # (+ perceptual + GAN) against the unsharp-masked GT, Adam (0.9, 0.99) eps 1e-8, EMA 0.999. Start from
    # --pretrained-model.
    "realesrnet-x4": _realesrgan(None, batch_size=12, learning_rate=2e-4, epochs=1000),
    "realesrgan-x4": _realesrgan("unet-sn", batch_size=12),
    "aesrgan-x4": _realesrgan("attention-unet", batch_size=6),
    "aesrgan-multi-x4": _realesrgan("attention-unet-multiscale", batch_size=16),
}
