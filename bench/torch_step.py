#!/usr/bin/python3
"""Reference timing: one BYOL training step in PyTorch (Debian's python3-torch) on the CIFAR ResNet-18 or
byol's 28×28 ConvNet, in fp32 or under bf16 autocast.

Same step as byol's: two views, online forward and backward, target forward without gradient, symmetric
loss, SGD-momentum update (LARS's extra per-layer norms are negligible here), EMA of the target. Heads
Linear(d→4096) → BN → ReLU → Linear(4096→256). Prints one JSON line:
{"model", "batch", "bf16", "images_per_s", "threads"}.

    OPENBLAS_CORETYPE=SKYLAKEX /usr/bin/python3 bench/torch_step.py --model resnet18-cifar --batch 256 --steps 3 [--bf16]
"""
import argparse
import copy
import json
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
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


def resnet18_cifar():
    layers = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
    cin = 64
    for g, c in enumerate((64, 128, 256, 512)):
        for b in range(2):
            layers.append(Block(cin, c, 2 if (b == 0 and g > 0) else 1))
            cin = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


def convnet():
    """byol's ConvNet (src/nets/convnet.ts): three 3×3 conv → BN → ReLU stages (32, 64, 128), 2×2 max-pool after
    the first two, global average pooling."""
    layers, cin = [], 1
    for i, c in enumerate((32, 64, 128)):
        layers += [nn.Conv2d(cin, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
        if i < 2:
            layers.append(nn.MaxPool2d(2))
        cin = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


def mlp(d):
    return nn.Sequential(nn.Linear(d, 4096), nn.BatchNorm1d(4096), nn.ReLU(), nn.Linear(4096, 256, bias=False))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--model", choices=("resnet18-cifar", "convnet"), default="resnet18-cifar")
    # bf16 autocast: matrix products and convolutions in bfloat16 (oneDNN's AVX512-BF16 / AMX kernels), fp32 weights.
    ap.add_argument("--bf16", action="store_true")
    # Debian's torch starts with one OpenMP thread here; the peer at its best uses every core.
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.model == "convnet":
        online, shape = nn.Sequential(convnet(), mlp(128)), (1, 28, 28)
    else:
        online, shape = nn.Sequential(resnet18_cifar(), mlp(512)), (3, 32, 32)
    predictor = mlp(256)
    target = copy.deepcopy(online)
    for p in target.parameters():
        p.requires_grad_(False)
    params = list(online.parameters()) + list(predictor.parameters())
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1.5e-6)
    x1 = torch.rand(args.batch, *shape)
    x2 = torch.rand(args.batch, *shape)

    def loss_fn(p, z):
        return (2 - 2 * F.cosine_similarity(p, z, dim=-1)).mean()

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            with torch.no_grad():
                t1, t2 = target(x1), target(x2)
            p1, p2 = predictor(online(x1)), predictor(online(x2))
            loss = loss_fn(p1.float(), t2.float()) + loss_fn(p2.float(), t1.float())
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for t, o in zip(target.parameters(), online.parameters()):
                t.mul_(0.996).add_(o, alpha=0.004)

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    secs = time.perf_counter() - t0
    print(json.dumps({"model": args.model, "batch": args.batch, "bf16": args.bf16, "images_per_s": args.steps * args.batch / secs, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
