"""SimSiam/BYOL CIFAR augmentation on device, in JAX, one key per image.

Per image: RandomResizedCrop to 32 (scale (0.2, 1.0), ratio (3/4, 4/3), bilinear), horizontal
flip (p = 0.5), colour jitter (brightness, contrast, saturation 0.4, hue 0.1) with p = 0.8,
grayscale with p = 0.2, then per-channel normalisation. The crop, resize and flip are one
separable linear map ``out = Ry @ img @ Rx^T`` (two small matmuls), so the whole pipeline is a
fixed-shape function that ``vmap`` and ``jit`` handle without gathers.

Deviation from torchvision, stated: the four jitter operations run in the fixed order
brightness, contrast, saturation, hue (torchvision draws a random order per image).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

F32 = jnp.float32
SIZE = 32
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


class CropParams(NamedTuple):
    """Crop box in pixels of the source image (all float32 scalars per image)."""

    top: jax.Array
    left: jax.Array
    height: jax.Array
    width: jax.Array


def sample_crop(key: jax.Array, size: int = SIZE, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3),
                attempts: int = 10) -> CropParams:
    """torchvision's RandomResizedCrop box for one ``size x size`` image.

    Up to ``attempts`` (area, log-aspect) draws; the first box that fits is used, otherwise the
    central crop clipped to ``ratio``. Integer box sizes, as torchvision rounds them.
    """
    k_area, k_ratio, k_top, k_left = jax.random.split(key, 4)
    area = float(size * size)
    target = area * jax.random.uniform(k_area, (attempts,), F32, scale[0], scale[1])
    log_r = jax.random.uniform(k_ratio, (attempts,), F32, math.log(ratio[0]), math.log(ratio[1]))
    r = jnp.exp(log_r)
    w = jnp.round(jnp.sqrt(target * r))
    h = jnp.round(jnp.sqrt(target / r))
    ok = (w > 0) & (h > 0) & (w <= size) & (h <= size)
    first = jnp.argmax(ok)
    any_ok = ok.any()
    w_sel = jnp.where(any_ok, w[first], float(size))
    h_sel = jnp.where(any_ok, h[first], float(size))
    u_top = jax.random.uniform(k_top, (), F32)
    u_left = jax.random.uniform(k_left, (), F32)
    # randint(0, size - h + 1) as floor(u * (size - h + 1))
    top = jnp.floor(u_top * (size - h_sel + 1.0))
    left = jnp.floor(u_left * (size - w_sel + 1.0))
    return CropParams(top.astype(F32), left.astype(F32), h_sel.astype(F32), w_sel.astype(F32))


def resize_matrix(start: jax.Array, length: jax.Array, size: int = SIZE, out: int = SIZE) -> jax.Array:
    """``[out, size]`` bilinear interpolation matrix mapping pixels ``start .. start+length`` to ``out``.

    Half-pixel centres (``align_corners=False``), edge-clamped, as torch's bilinear resize.
    """
    i = jnp.arange(out, dtype=F32)
    src = start + (i + 0.5) * (length / out) - 0.5
    src = jnp.clip(src, start, start + length - 1.0)
    j = jnp.arange(size, dtype=F32)
    return jnp.maximum(0.0, 1.0 - jnp.abs(src[:, None] - j[None, :])).astype(F32)


def _gray(img: jax.Array) -> jax.Array:
    """``[H, W, 3]`` -> ``[H, W, 1]`` ITU-R 601 luma."""
    return (0.299 * img[..., 0:1] + 0.587 * img[..., 1:2] + 0.114 * img[..., 2:3]).astype(F32)


def _rgb_to_hsv(img):
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    maxc = jnp.max(img, axis=-1)
    minc = jnp.min(img, axis=-1)
    v = maxc
    delta = maxc - minc
    s = jnp.where(maxc > 0, delta / jnp.where(maxc > 0, maxc, 1.0), 0.0)
    safe = jnp.where(delta > 0, delta, 1.0)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = jnp.where(maxc == r, bc - gc, jnp.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = jnp.where(delta > 0, (h / 6.0) % 1.0, 0.0)
    return h, s, v


def _hsv_to_rgb(h, s, v):
    i = jnp.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.astype(jnp.int32) % 6
    r = jnp.select([i == 0, i == 1, i == 2, i == 3, i == 4], [v, q, p, p, t], v)
    g = jnp.select([i == 0, i == 1, i == 2, i == 3, i == 4], [t, v, v, q, p], p)
    b = jnp.select([i == 0, i == 1, i == 2, i == 3, i == 4], [p, p, t, v, v], q)
    return jnp.stack([r, g, b], axis=-1)


def color_jitter(key: jax.Array, img: jax.Array, brightness=0.4, contrast=0.4, saturation=0.4,
                 hue=0.1) -> jax.Array:
    """Colour jitter of one ``[H, W, 3]`` float32 image in ``[0, 1]`` (fixed op order)."""
    kb, kc, ks, kh = jax.random.split(key, 4)
    fb = jax.random.uniform(kb, (), F32, 1 - brightness, 1 + brightness)
    fc = jax.random.uniform(kc, (), F32, 1 - contrast, 1 + contrast)
    fs = jax.random.uniform(ks, (), F32, 1 - saturation, 1 + saturation)
    fh = jax.random.uniform(kh, (), F32, -hue, hue)
    img = jnp.clip(img * fb, 0.0, 1.0)
    m = jnp.mean(_gray(img))
    img = jnp.clip((img - m) * fc + m, 0.0, 1.0)
    g = _gray(img)
    img = jnp.clip((img - g) * fs + g, 0.0, 1.0)
    h, s, v = _rgb_to_hsv(img)
    return _hsv_to_rgb((h + fh) % 1.0, s, v).astype(F32)


def augment_one(key: jax.Array, img: jax.Array, p_jitter: float = 0.8, p_gray: float = 0.2,
                scale=(0.2, 1.0)) -> jax.Array:
    """One augmented, normalised view of one image.

    Args:
        key: PRNG key for this image and view.
        img: ``[32, 32, 3]`` uint8 (or float in ``[0, 255]``).

    Returns:
        ``[32, 32, 3]`` float32, normalised with the CIFAR-10 channel mean and std.
    """
    k_crop, k_flip, k_jit, k_pj, k_pg = jax.random.split(key, 5)
    x = img.astype(F32) / 255.0
    c = sample_crop(k_crop, scale=scale)
    ry = resize_matrix(c.top, c.height)
    rx = resize_matrix(c.left, c.width)
    flip = jax.random.bernoulli(k_flip, 0.5)
    rx = jnp.where(flip, rx[::-1], rx)
    x = jnp.einsum("ij,jkc,lk->ilc", ry, x, rx)
    x = jnp.clip(x, 0.0, 1.0)
    x = jnp.where(jax.random.bernoulli(k_pj, p_jitter), color_jitter(k_jit, x), x)
    x = jnp.where(jax.random.bernoulli(k_pg, p_gray), jnp.broadcast_to(_gray(x), x.shape), x)
    return normalize(x)


def normalize(x: jax.Array) -> jax.Array:
    """``[..., 3]`` float in ``[0, 1]`` -> standardised float32."""
    mean = jnp.asarray(CIFAR_MEAN, F32)
    std = jnp.asarray(CIFAR_STD, F32)
    return ((x.astype(F32) - mean) / std).astype(F32)


def eval_view(images: jax.Array) -> jax.Array:
    """``[B, 32, 32, 3]`` uint8 -> normalised float32, no augmentation (for kNN and the probe)."""
    return normalize(images.astype(F32) / 255.0)


def two_views(key: jax.Array, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Two independent augmented views of a batch.

    Args:
        key: one PRNG key; per-image, per-view keys are split from it.
        images: ``[B, 32, 32, 3]`` uint8.

    Returns:
        ``(x1, x2)``, each ``[B, 32, 32, 3]`` float32.
    """
    b = images.shape[0]
    keys = jax.random.split(key, 2 * b).reshape(2, b, *jax.random.split(key, 1).shape[1:])
    aug = jax.vmap(augment_one)
    return aug(keys[0], images), aug(keys[1], images)
