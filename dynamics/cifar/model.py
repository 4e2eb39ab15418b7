"""CIFAR ResNet-18 with SimSiam's projector and predictor, in Flax (NHWC, float32).

Widths scale with ``width``: stem and stages ``[64, 128, 256, 512] * width``, projector and
predictor output ``d = 2048 * width``, predictor bottleneck ``512 * width`` (at ``width = 1``
exactly SimSiam's CIFAR setup). ``predictor`` is ``"mlp"`` (bottleneck, 2 layers), ``"linear"``
(one ``d x d`` matrix, no bias: the toy models' ``Wp``), or ``"none"``.

Both views of a batch go through the network as one ``[2B, ...]`` batch, and every BatchNorm
takes its statistics over each view's half separately (``groups = 2``): the same arithmetic as
two separate forward passes, as in the reference SimSiam code, in one set of larger kernels.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

F32 = jnp.float32
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
dense_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _bias_init(fan_in: int) -> Callable:
    bound = 1.0 / max(fan_in, 1) ** 0.5

    def init(key, shape, dtype=F32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class GroupBatchNorm(nn.Module):
    """BatchNorm whose batch statistics are taken over ``groups`` equal slices of the batch.

    ``x``: ``[G * B, ..., C]``; statistics over all axes but the last, per slice of ``B``.
    Running averages (momentum 0.9, as torch's 0.1) track the mean over slices. Statistics are
    computed in float32 whatever the input dtype.
    """

    groups: int = 1
    use_affine: bool = True
    momentum: float = 0.9
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        c = x.shape[-1]
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), F32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), F32))
        if train:
            g = self.groups
            xg = x.reshape((g, -1) + x.shape[1:]).astype(F32)
            axes = tuple(range(1, xg.ndim - 1))
            mean = jnp.mean(xg, axis=axes, keepdims=True)
            var = jnp.maximum(jnp.mean(jnp.square(xg), axis=axes, keepdims=True) - jnp.square(mean), 0.0)
            if not self.is_initializing():
                n = xg[0].size // c
                unbiased = var.reshape(g, c).mean(0) * (n / max(n - 1, 1))
                m = self.momentum
                ra_mean.value = m * ra_mean.value + (1 - m) * mean.reshape(g, c).mean(0)
                ra_var.value = m * ra_var.value + (1 - m) * unbiased
        else:
            xg = x.reshape((1,) + x.shape).astype(F32)
            mean = ra_mean.value.reshape((1,) * (xg.ndim - 1) + (c,))
            var = ra_var.value.reshape((1,) * (xg.ndim - 1) + (c,))
        scale = jax.lax.rsqrt(var + self.epsilon)
        if self.use_affine:
            gamma = self.param("scale", nn.initializers.ones, (c,), F32)
            beta = self.param("bias", nn.initializers.zeros, (c,), F32)
            scale = scale * gamma
            shift = beta - mean * scale
        else:
            shift = -mean * scale
        y = xg * scale + shift
        return y.reshape(x.shape).astype(x.dtype)


def _conv(features: int, stride: int, kernel: int = 3, dtype=F32) -> nn.Conv:
    pad = (kernel - 1) // 2
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                   use_bias=False, kernel_init=conv_init, dtype=dtype, param_dtype=F32)


class BasicBlock(nn.Module):
    features: int
    stride: int
    groups: int = 1
    dtype: Any = F32

    @nn.compact
    def __call__(self, x, train: bool):
        bn = lambda: GroupBatchNorm(groups=self.groups)  # noqa: E731
        y = _conv(self.features, self.stride, dtype=self.dtype)(x)
        y = nn.relu(bn()(y, train))
        y = _conv(self.features, 1, dtype=self.dtype)(y)
        y = bn()(y, train)
        if self.stride != 1 or x.shape[-1] != self.features:
            x = _conv(self.features, self.stride, kernel=1, dtype=self.dtype)(x)
            x = bn()(x, train)
        return nn.relu(y + x)


def widths(width: float) -> dict[str, int]:
    """Channel and feature sizes for a width multiplier."""
    s = lambda n: max(1, int(round(n * width)))  # noqa: E731
    return {"stages": [s(64), s(128), s(256), s(512)], "feat": s(512), "proj": s(2048), "pred_hidden": s(512)}


class ResNet18(nn.Module):
    """CIFAR ResNet-18 backbone: ``[N, 32, 32, 3]`` -> ``[N, 512 * width]`` (after global avg pool).

    ``blocks``: basic blocks per stage, ``(2, 2, 2, 2)`` for ResNet-18 (the tests use fewer).
    """

    width: float = 1.0
    groups: int = 1
    dtype: Any = F32
    blocks: tuple[int, ...] = (2, 2, 2, 2)

    @nn.compact
    def __call__(self, x, train: bool):
        w = widths(self.width)["stages"]
        x = x.astype(self.dtype)
        x = _conv(w[0], 1, dtype=self.dtype)(x)
        x = nn.relu(GroupBatchNorm(groups=self.groups)(x, train))
        for i, (f, nb) in enumerate(zip(w, self.blocks)):
            for j in range(nb):
                x = BasicBlock(f, 2 if (i > 0 and j == 0) else 1, groups=self.groups, dtype=self.dtype)(x, train)
        return jnp.mean(x.astype(F32), axis=(1, 2))


class Projector(nn.Module):
    """SimSiam CIFAR projector: Linear-BN-ReLU-Linear-BN(no affine), ``[N, feat] -> [N, d]``."""

    d: int
    groups: int = 1

    @nn.compact
    def __call__(self, h, train: bool):
        h = nn.Dense(self.d, use_bias=False, kernel_init=dense_init, dtype=F32, param_dtype=F32)(h)
        h = nn.relu(GroupBatchNorm(groups=self.groups)(h, train))
        h = nn.Dense(self.d, use_bias=False, kernel_init=dense_init, dtype=F32, param_dtype=F32)(h)
        return GroupBatchNorm(groups=self.groups, use_affine=False)(h, train)


#: the predictors that are a module of the network (DirectPred's is set from F outside it)
TRAINED_OR_RANDOM = ("mlp", "linear", "random")


class Predictor(nn.Module):
    """``"mlp"``: Linear-BN-ReLU-Linear (``d -> hidden -> d``); ``"linear"``: ``z @ Wp^T``, ``[d, d]``,
    initialised at ``I + 0.01 N``; ``"random"``: ``z @ Wp^T`` with entries ``N(0, 1/d)`` (the optimizer
    keeps it fixed: the toy's fixed random predictor)."""

    d: int
    hidden: int
    kind: str = "mlp"
    groups: int = 1

    @nn.compact
    def __call__(self, z, train: bool):
        if self.kind == "linear":
            wp = self.param("wp", lambda k, s, t: jnp.eye(s[0], dtype=t) +
                            0.01 * jax.random.normal(k, s, t), (self.d, self.d), F32)
            return z @ wp.T
        if self.kind == "random":
            wp = self.param("wp", lambda k, s, t: jax.random.normal(k, s, t) / jnp.sqrt(s[0]).astype(t),
                            (self.d, self.d), F32)
            return z @ wp.T
        h = nn.Dense(self.hidden, use_bias=False, kernel_init=dense_init, dtype=F32, param_dtype=F32)(z)
        h = nn.relu(GroupBatchNorm(groups=self.groups)(h, train))
        return nn.Dense(self.d, kernel_init=dense_init, bias_init=_bias_init(self.hidden), dtype=F32,
                        param_dtype=F32)(h)


class SiameseNet(nn.Module):
    """Backbone + projector + predictor.

    ``__call__(x, train)`` with ``x`` ``[G * B, 32, 32, 3]`` float32 returns ``(z, p)``, each
    ``[G * B, d]``; with ``predictor`` ``"none"`` or ``"directpred"`` (predictor applied outside,
    from the ``F`` estimate) ``p`` is ``z``. :meth:`features` gives the backbone output ``[N, feat]``.
    """

    width: float = 1.0
    predictor: str = "mlp"
    groups: int = 1
    dtype: Any = F32
    blocks: tuple[int, ...] = (2, 2, 2, 2)

    def setup(self):
        w = widths(self.width)
        self.backbone = ResNet18(self.width, groups=self.groups, dtype=self.dtype, blocks=self.blocks)
        self.projector = Projector(w["proj"], groups=self.groups)
        if self.predictor in TRAINED_OR_RANDOM:
            self.pred = Predictor(w["proj"], w["pred_hidden"], kind=self.predictor, groups=self.groups)

    def __call__(self, x, train: bool = True):
        z = self.projector(self.backbone(x, train), train)
        p = self.pred(z, train) if self.predictor in TRAINED_OR_RANDOM else z
        return z, p

    def project(self, x, train: bool = True):
        return self.projector(self.backbone(x, train), train)

    def features(self, x):
        return self.backbone(x, False)
