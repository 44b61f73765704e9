"""Blur kernels of the Real-ESRGAN degradation model (formulas of BasicSR's degradations.py).

Every kernel is a float64 ``k x k`` array (k odd) that sums to 1. Coordinates: the grid runs
``-(k // 2) .. k // 2`` on both axes, ``x`` along columns and ``y`` along rows, and the covariance is
``Sigma = R diag(sigma_x^2, sigma_y^2) R^T`` with ``R`` the rotation by ``theta``; ``q = [x y] Sigma^-1 [x y]^T``.

- Gaussian ``exp(-q / 2)``; generalized Gaussian ``exp(-q^beta / 2)``; plateau ``1 / (1 + q^beta)``;
- sinc (circular low-pass) ``omega_c J1(omega_c r) / (2 pi r)`` with the centre value ``omega_c^2 / (4 pi)``
  (the r -> 0 limit).

Drawing is split from building: `draw_kernel_params(rng, ...)` returns a small dict of numbers (fast; the
distribution tests use it alone) and `build_kernel(params)` makes the array.
"""
import math

import numpy as np
from scipy import special

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
KERNEL_SIZES = tuple(range(7, 22, 2))  # Real-ESRGAN's kernel_range: 7, 9, ..., 21
PAD_TO = 21


def is_isotropic(kind):
    """True for "iso", "generalized_iso", "plateau_iso" (and "sinc", which is circular)."""
    return kind in ("iso", "sinc") or kind.endswith("_iso")


def mesh_grid(size):
    """(xx, yy) coordinates -(size // 2) .. size // 2 of a size x size kernel (xx varies along columns)."""
    ax = np.arange(-(size // 2), size // 2 + 1, dtype=np.float64)
    return np.meshgrid(ax, ax)


def sigma_matrix(sigma_x, sigma_y, theta):
    """Covariance R diag(sigma_x^2, sigma_y^2) R^T, R the rotation by theta (radians)."""
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    return rot @ np.diag([sigma_x ** 2, sigma_y ** 2]) @ rot.T


def _quadratic_form(size, sigma_x, sigma_y, theta):
    """q of every grid point (isotropic when sigma_y is None)."""
    xx, yy = mesh_grid(size)
    sigma_y = sigma_x if sigma_y is None else sigma_y
    inv = np.linalg.inv(sigma_matrix(sigma_x, sigma_y, theta))
    return inv[0, 0] * xx * xx + (inv[0, 1] + inv[1, 0]) * xx * yy + inv[1, 1] * yy * yy


def _normalise(k):
    return k / k.sum()


def gaussian_kernel(size, sigma_x, sigma_y=None, theta=0.0):
    """Bivariate Gaussian exp(-q/2), normalised (isotropic when sigma_y is None)."""
    return _normalise(np.exp(-0.5 * _quadratic_form(size, sigma_x, sigma_y, theta)))


def generalized_kernel(size, sigma_x, sigma_y=None, theta=0.0, beta=1.0):
    """Generalized Gaussian exp(-q^beta / 2), normalised; beta 1 is the Gaussian."""
    return _normalise(np.exp(-0.5 * np.power(_quadratic_form(size, sigma_x, sigma_y, theta), beta)))


def plateau_kernel(size, sigma_x, sigma_y=None, theta=0.0, beta=1.0):
    """Plateau-shaped 1 / (1 + q^beta), normalised."""
    return _normalise(1.0 / (np.power(_quadratic_form(size, sigma_x, sigma_y, theta), beta) + 1.0))


def sinc_kernel(size, omega_c, normalize=True):
    """Circular low-pass omega_c J1(omega_c r) / (2 pi r), centre omega_c^2 / (4 pi); normalised unless told."""
    xx, yy = mesh_grid(size)
    r = np.hypot(xx, yy)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = omega_c * special.j1(omega_c * r) / (2 * np.pi * r)
    c = size // 2
    k[c, c] = omega_c ** 2 / (4 * np.pi)
    return _normalise(k) if normalize else k


def pulse_kernel(size=PAD_TO):
    """The identity: 1 at the centre, 0 elsewhere."""
    k = np.zeros((size, size))
    k[size // 2, size // 2] = 1.0
    return k


def pad_kernel(k, size=PAD_TO):
    """Zero-pad an odd k x k kernel to size x size (centred)."""
    p = (size - k.shape[0]) // 2
    if p < 0:
        raise ValueError(f"kernel {k.shape[0]}x{k.shape[0]} is larger than {size}x{size}")
    return np.pad(k, p) if p else k


# ----------------------------------------------------------------------------------------------------------
# Random draws (Real-ESRGAN's random_mixed_kernels + the dataset's sinc branch)
# ----------------------------------------------------------------------------------------------------------


def _beta(rng, lo, hi):
    # BasicSR: half the time U(lo, 1), otherwise U(1, hi) (plateau: lo = 1 gives exactly 1 half the time)
    return float(rng.uniform(lo, 1.0)) if rng.random() < 0.5 else float(rng.uniform(1.0, hi))


def draw_kernel_params(rng, kernel_list=KERNEL_TYPES, kernel_prob=(0.45, 0.25, 0.12, 0.03, 0.12, 0.03),
                       sigma=(0.2, 3.0), betag_range=(0.5, 4.0), betap_range=(1.0, 2.0), sinc_prob=0.1,
                       sizes=KERNEL_SIZES, rotation=(-math.pi, math.pi)):
    """One stage's kernel: a dict with "type" and its numbers (no array; `build_kernel` makes it).

    Size uniform in `sizes`; with p `sinc_prob` a sinc with omega_c ~ U(pi/3, pi) (size < 13) or U(pi/5, pi);
    otherwise a type drawn from `kernel_list` with `kernel_prob`, sigma_x (and sigma_y, theta for the
    anisotropic ones) uniform in `sigma` / `rotation`, and beta for the generalized / plateau kernels.
    """
    size = int(sizes[rng.integers(len(sizes))])
    if rng.random() < sinc_prob:
        lo = math.pi / 3 if size < 13 else math.pi / 5
        return {"type": "sinc", "size": size, "omega_c": float(rng.uniform(lo, math.pi))}
    p = np.asarray(kernel_prob, dtype=np.float64)
    kind = kernel_list[int(rng.choice(len(kernel_list), p=p / p.sum()))]
    sx = float(rng.uniform(*sigma))
    if is_isotropic(kind):
        sy, theta = sx, 0.0
    else:
        sy, theta = float(rng.uniform(*sigma)), float(rng.uniform(*rotation))
    out = {"type": kind, "size": size, "sigma_x": sx, "sigma_y": sy, "theta": theta}
    if kind.startswith("generalized"):
        out["beta"] = _beta(rng, *betag_range)
    elif kind.startswith("plateau"):
        out["beta"] = _beta(rng, *betap_range)
    return out


def draw_final_sinc_params(rng, prob=0.8, sizes=KERNEL_SIZES, omega=(math.pi / 3, math.pi)):
    """The final sinc filter: with p `prob` a sinc of random size and omega_c ~ U(omega), else the identity."""
    if rng.random() < prob:
        size = int(sizes[rng.integers(len(sizes))])
        return {"type": "sinc", "size": size, "omega_c": float(rng.uniform(*omega))}
    return {"type": "pulse", "size": PAD_TO}


def build_kernel(params, pad_to=PAD_TO):
    """The normalised kernel array of `params` (from the draw functions), zero-padded to pad_to x pad_to
    (pad_to None: the unpadded size x size kernel)."""
    kind, size = params["type"], params["size"]
    if kind == "sinc":
        k = sinc_kernel(size, params["omega_c"])
    elif kind == "pulse":
        k = pulse_kernel(size)
    else:
        args = (size, params["sigma_x"], params["sigma_y"], params["theta"])
        if kind in ("iso", "aniso"):
            k = gaussian_kernel(*args)
        elif kind.startswith("generalized"):
            k = generalized_kernel(*args, beta=params["beta"])
        elif kind.startswith("plateau"):
            k = plateau_kernel(*args, beta=params["beta"])
        else:
            raise ValueError(f"unknown kernel type {kind!r}; expected one of {KERNEL_TYPES + ('sinc', 'pulse')}")
    return pad_kernel(k, pad_to) if pad_to else k


def describe(params):
    """Short caption text: 'iso 13 s1.20', 'aniso 9 s0.8/2.1 r34', 'sinc 15 w1.57', 'pulse'."""
    kind = params["type"]
    if kind == "pulse":
        return "none"
    if kind == "sinc":
        return f"sinc{params['size']} w{params['omega_c']:.2f}"
    text = f"{kind.replace('generalized', 'gen').replace('plateau', 'plat')}{params['size']} s{params['sigma_x']:.2f}"
    if not is_isotropic(kind):
        text += f"/{params['sigma_y']:.2f} r{math.degrees(params['theta']):.0f}"
    if "beta" in params:
        text += f" b{params['beta']:.2f}"
    return text
