"""The unsharp-masked GT of Real-ESRGAN's L1 / perceptual targets, in keras.ops (BasicSR's `USMSharp`), for batches
that come without one (paired data: realesrgan_model.py feed_data sharpens the GT of paired batches on the device).

`usm_sharp(hr)`: hr N x H x W x 3 in [0, 255] (H, W > radius // 2) -> the sharpened image, same range:
blur = Gaussian 51 x 51, sigma 8 (cv2.getGaussianKernel(51, 0)), reflect padding; residual = img - blur;
mask = |residual| * 255 > 10 (grey levels), soft mask = blur(mask); sharp = clip(img + 0.5 residual, 0, 1);
out = soft * sharp + (1 - soft) * img, on img = hr / 255. The degradation pipeline's numpy `usm_sharp`
(degradations/pipeline.py) is the same operation on the loader's side (tests/test_gan.py compares all three).
"""
import numpy as np
from keras import ops


def gaussian_kernel_1d(radius=51, sigma=8.0):
    """cv2.getGaussianKernel(radius, sigma) (sigma 0: OpenCV's 0.3 ((radius - 1) / 2 - 1) + 0.8)."""
    if radius % 2 == 0:
        radius += 1
    if not sigma or sigma <= 0:
        sigma = 0.3 * ((radius - 1) * 0.5 - 1) + 0.8
    x = np.arange(radius, dtype=np.float64) - (radius - 1) / 2
    k = np.exp(-x * x / (2.0 * sigma * sigma))
    return (k / k.sum()).astype(np.float32)


def _blur(x, kernel):
    """Separable depthwise blur with reflect padding (BasicSR's filter2D of the outer-product kernel)."""
    r = len(kernel) // 2
    channels = x.shape[-1]
    x = ops.pad(x, [[0, 0], [r, r], [r, r], [0, 0]], mode="reflect")
    k = ops.convert_to_tensor(kernel, dtype=x.dtype)
    x = ops.depthwise_conv(x, ops.tile(ops.reshape(k, (-1, 1, 1, 1)), (1, 1, channels, 1)), padding="valid")
    return ops.depthwise_conv(x, ops.tile(ops.reshape(k, (1, -1, 1, 1)), (1, 1, channels, 1)), padding="valid")


def usm_sharp(hr, radius=51, sigma=8.0, weight=0.5, threshold=10):
    """BasicSR's USMSharp of `hr` (N x H x W x C, [0, 255]); float32 in [0, 255]."""
    img = ops.cast(hr, "float32") / 255.0
    kernel = gaussian_kernel_1d(radius, sigma)
    residual = img - _blur(img, kernel)
    mask = ops.cast(ops.abs(residual) * 255.0 > threshold, "float32")
    soft = _blur(mask, kernel)
    sharp = ops.clip(img + weight * residual, 0.0, 1.0)
    return (soft * sharp + (1.0 - soft) * img) * 255.0
