"""PyTorch reference of the SimSiam training step benchmarked in ``cifar_throughput.py``.

The same network as :mod:`dynamics.cifar.model` (CIFAR ResNet-18 with a width multiplier,
SimSiam's 2-layer projector and bottleneck predictor, all widths scaled alike), the same loss
(symmetric negative cosine with stop-gradient, two separate forward passes as in the reference
SimSiam code) and the same optimizer (SGD, momentum 0.9, coupled weight decay). Benchmark only:
torch is not a dependency of the project.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _w(n: int, width: float) -> int:
    return max(1, int(round(n * width)))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        return F.relu(y + (x if self.short is None else self.short(x)))


class SimSiam(nn.Module):
    def __init__(self, width: float = 1.0):
        super().__init__()
        st = [_w(64, width), _w(128, width), _w(256, width), _w(512, width)]
        d, h = _w(2048, width), _w(512, width)
        layers = [nn.Conv2d(3, st[0], 3, 1, 1, bias=False), nn.BatchNorm2d(st[0]), nn.ReLU(inplace=True)]
        cin = st[0]
        for i, c in enumerate(st):
            for j in range(2):
                layers.append(BasicBlock(cin, c, 2 if (i > 0 and j == 0) else 1))
                cin = c
        self.backbone = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.projector = nn.Sequential(nn.Linear(cin, d, bias=False), nn.BatchNorm1d(d), nn.ReLU(inplace=True),
                                       nn.Linear(d, d, bias=False), nn.BatchNorm1d(d, affine=False))
        self.predictor = nn.Sequential(nn.Linear(d, h, bias=False), nn.BatchNorm1d(h), nn.ReLU(inplace=True),
                                       nn.Linear(h, d))

    def forward(self, x1, x2):
        z1 = self.projector(self.backbone(x1))
        z2 = self.projector(self.backbone(x2))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        return p1, p2, z1.detach(), z2.detach()


def make_step(width: float = 0.25, lr: float = 0.015, wd: float = 5e-4, channels_last: bool = False):
    """Return ``step(x1, x2) -> loss`` (one SGD step) for NCHW float32 views ``[B, 3, 32, 32]``."""
    model = SimSiam(width)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=wd)
    model.train()

    def step(x1, x2):
        p1, p2, z1, z2 = model(x1, x2)
        loss = -0.5 * (F.cosine_similarity(p1, z2, dim=-1).mean() + F.cosine_similarity(p2, z1, dim=-1).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    return step
