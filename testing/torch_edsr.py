"""Plain PyTorch EDSR, layer for layer the network `model.build_model("edsr", scale, ...)` builds.

Used as a speed reference by `benchmarks/train_speed.py` and (with `train_speed`, float32 or bf16/fp16 AMP,
CUDA when available) by `benchmarks/scaling.py`. Same layers and parameter count as the
Keras model: normalize with the DIV2K RGB mean, head conv, `num_res_blocks` x (conv-ReLU-conv, optional
residual scaling, skip), body conv + global skip, sub-pixel upsampling (conv to 4x filters + pixel shuffle
per factor 2, or 9x + shuffle 3 for x3), tail conv to 3 channels, denormalize. Input and output are
NCHW float32 in pixel units [0, 255].

    python -m testing.torch_edsr --batch-size 16 64 --amp float32 bf16 --steps 10 --json torch_amp.json
    from testing.torch_edsr import train_speed; train_speed(batch_size=64, amp="bf16")   # -> {"steps_per_s": ...}
"""
import torch
from torch import nn

DIV2K_RGB_MEAN = (0.4488 * 255, 0.4371 * 255, 0.4040 * 255)


def conv3x3(c_in, c_out):
    return nn.Conv2d(c_in, c_out, 3, padding=1)


class ResBlock(nn.Module):
    def __init__(self, num_filters, res_scaling=None):
        super().__init__()
        self.conv1 = conv3x3(num_filters, num_filters)
        self.conv2 = conv3x3(num_filters, num_filters)
        self.res_scaling = res_scaling

    def forward(self, x):
        b = self.conv2(torch.relu(self.conv1(x)))
        if self.res_scaling:
            b = b * self.res_scaling
        return x + b


class Upsample(nn.Sequential):
    def __init__(self, scale, num_filters):
        layers = []
        if scale in (2, 4):
            for _ in range(scale // 2):
                layers += [conv3x3(num_filters, num_filters * 4), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [conv3x3(num_filters, num_filters * 9), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"scale must be 2, 3 or 4, got {scale}")
        super().__init__(*layers)


class EDSR(nn.Module):
    def __init__(self, scale=2, num_filters=64, num_res_blocks=16, res_scaling=None):
        super().__init__()
        self.register_buffer("mean", torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1))
        self.head = conv3x3(3, num_filters)
        self.body = nn.Sequential(*[ResBlock(num_filters, res_scaling) for _ in range(num_res_blocks)])
        self.body_conv = conv3x3(num_filters, num_filters)
        self.upsample = Upsample(scale, num_filters)
        self.tail = conv3x3(num_filters, 3)

    def forward(self, x):
        x = (x - self.mean) / 127.5
        x = self.head(x)
        x = x + self.body_conv(self.body(x))
        x = self.tail(self.upsample(x))
        return x * 127.5 + self.mean


def count_params(module):
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------------------ training-speed reference
def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_speed(batch_size=16, patch=48, scale=2, num_filters=64, num_res_blocks=16, steps=10, warmup=3,
                amp=None, device=None, channels_last=True, fused=True, seed=0):
    """Median training-step time of this EDSR (L1 loss, Adam 1e-4) on synthetic data, as a reference.

    amp: None (float32), "bf16" (torch.autocast bfloat16; no loss scaling needed) or "fp16" (autocast float16
    with a GradScaler; CUDA only). device: default CUDA when available, else CPU. channels_last + fused Adam
    is PyTorch's fastest variant in benchmarks/train_speed.py (fused Adam needs CUDA or a recent CPU build; it
    falls back to the default Adam where unsupported). Returns a JSON-able dict.
    """
    import statistics
    import time

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if amp not in (None, "bf16", "fp16"):
        raise ValueError(f"amp must be None, 'bf16' or 'fp16', got {amp!r}")
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("amp='fp16' needs CUDA (loss scaling); use amp='bf16' on the CPU")
    torch.manual_seed(seed)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = EDSR(scale, num_filters, num_res_blocks).to(device=device, memory_format=fmt)
    try:
        opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=bool(fused))
    except (RuntimeError, TypeError):
        opt, fused = torch.optim.Adam(model.parameters(), lr=1e-4), False
    scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    g = torch.Generator().manual_seed(seed)
    lr = (torch.rand(batch_size, 3, patch, patch, generator=g) * 255).to(device).contiguous(memory_format=fmt)
    hr = (torch.rand(batch_size, 3, scale * patch, scale * patch, generator=g) * 255).to(device)
    hr = hr.contiguous(memory_format=fmt)
    loss_fn = nn.L1Loss()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            sr = model(lr)
        loss = loss_fn(sr.float(), hr)  # the loss in float32, as the Keras mixed-precision policy does
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        return loss

    for _ in range(warmup):
        step()
    _sync(device)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        loss = step()
        loss.item()  # waits for the step, like Keras' logs
        _sync(device)
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"framework": f"torch {torch.__version__}", "device": name, "amp": amp or "float32",
            "batch_size": batch_size, "patch": patch, "scale": scale, "params": count_params(model),
            "channels_last": channels_last, "fused_adam": bool(fused), "steps": steps, "times": times,
            "s_per_step": med, "steps_per_s": 1 / med, "samples_per_s": batch_size / med}


def main(argv=None):
    import argparse
    import json

    p = argparse.ArgumentParser(description="PyTorch EDSR training-speed reference (float32 and AMP).")
    p.add_argument("--batch-size", type=int, nargs="+", default=[16, 64])
    p.add_argument("--amp", nargs="+", default=["float32", "bf16"], choices=["float32", "bf16", "fp16"])
    p.add_argument("--patch", type=int, default=48)
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    rows = []
    for b in args.batch_size:
        for amp in args.amp:
            r = train_speed(batch_size=b, patch=args.patch, scale=args.scale, steps=args.steps, warmup=args.warmup,
                            amp=None if amp == "float32" else amp, device=args.device)
            rows.append(r)
            print(f"{r['device']:<24} batch {b:>3} {r['amp']:<8} {r['s_per_step'] * 1000:9.1f} ms/step "
                  f"{r['steps_per_s']:7.2f} steps/s {r['samples_per_s']:8.1f} samples/s", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
