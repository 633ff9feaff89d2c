"""Continue a byol run's BYOL in plain PyTorch (a GPU, a bigger machine), then bring the encoder back to byol.

    byol export runs/photos --format safetensors --whole --out photos-whole.safetensors
    python3 examples/continue_in_pytorch.py photos-whole.safetensors photos/ --steps 5000 --out photos-back.pth
    byol import photos-back.pth --out models/photos-back        # or: byol pretrain folder:photos --init photos-back.pth

The exported file holds the online encoder, projector and predictor and the target encoder and projector under
PyTorch's names, and (in its metadata) the run's views, input normalization and τ. This script rebuilds the five
modules with torchvision, loads them strictly, and runs BYOL (Grill et al. 2020): the symmetrized 2 − 2·cos loss of
the online prediction against the target projection, no gradient into the target, the target an exponential moving
average of the online weights with τ rising from its base to 1 on a cosine (§3.3). The target keeps its own
batch-norm statistics, updated by its forward passes, as in the official code.

It needs torch and torchvision (and Pillow); it reads the safetensors file itself (no `safetensors` package needed).
Deviations, on purpose, to stay short: SGD with momentum instead of LARS (solo-learn has LARS), torchvision's colour
operations (close to, not the same as, TensorFlow's), and the learning rate constant after a short warm-up.
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torchvision import transforms as T


def read_safetensors(path):
    """(tensors, metadata) of a safetensors file of float32 tensors."""
    with open(path, 'rb') as f:
        raw = f.read()
    n = struct.unpack('<Q', raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop('__metadata__', {})
    body = memoryview(raw)[8 + n:]
    tensors = {}
    for key, v in header.items():
        if v['dtype'] != 'F32':
            sys.exit(f'{path}: {key} is {v["dtype"]}; this script reads float32 files (byol export writes them)')
        begin, end = v['data_offsets']
        tensors[key] = torch.from_numpy(np.frombuffer(body[begin:end], dtype='<f4').reshape(v['shape']).copy())
    return tensors, meta


def part(tensors, prefix):
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def resnet(state):
    """A torchvision ResNet shaped as the weights say (depth, CIFAR stem), without its classifier."""
    bottleneck = 'layer1.0.conv3.weight' in state
    blocks = [1 + max(int(k.split('.')[1]) for k in state if k.startswith(f'layer{i}.')) for i in range(1, 5)]
    block = torchvision.models.resnet.Bottleneck if bottleneck else torchvision.models.resnet.BasicBlock
    if state['conv1.weight'].shape[0] != 64:
        sys.exit('this script rebuilds width-1 ResNets only (torchvision has no width multiplier)')
    model = torchvision.models.resnet.ResNet(block, blocks)
    if state['conv1.weight'].shape[-1] == 3:  # CIFAR stem: 3×3 stride 1, no max-pool
        model.conv1 = torch.nn.Conv2d(state['conv1.weight'].shape[1], 64, 3, 1, 1, bias=False)
        model.maxpool = torch.nn.Identity()
    elif state['conv1.weight'].shape[1] != 3:
        model.conv1 = torch.nn.Conv2d(state['conv1.weight'].shape[1], 64, 7, 2, 3, bias=False)
    model.fc = torch.nn.Identity()
    model.load_state_dict(state)
    return model


def head(state):
    """byol's projector / predictor: Linear, BatchNorm1d, ReLU, Linear without bias (§3.3)."""
    hidden, inputs = state['0.weight'].shape
    model = torch.nn.Sequential(torch.nn.Linear(inputs, hidden), torch.nn.BatchNorm1d(hidden, eps=1e-5, momentum=0.1),
                                torch.nn.ReLU(inplace=True), torch.nn.Linear(hidden, state['3.weight'].shape[0], bias=False))
    model.load_state_dict(state)
    return model


def view_transform(views, i):
    """The run's view i (byol's views config) with torchvision's transforms."""
    v = views['views'][i]
    size = views['size']
    steps = [T.RandomResizedCrop(size, scale=tuple(views['crop']['scale']), ratio=tuple(views['crop']['ratio']),
                                 interpolation=T.InterpolationMode.BICUBIC if views['interpolation'] == 'bicubic' else T.InterpolationMode.BILINEAR),
             T.RandomHorizontalFlip(v['flip'])]
    c = v['colorJitter']
    steps.append(T.RandomApply([T.ColorJitter(c['brightness'], c['contrast'], c['saturation'], c['hue'])], p=c['prob']))
    steps.append(T.RandomGrayscale(v['grayscale']))
    if v['blur']['prob'] > 0:
        k = int(v['blur']['kernelFraction'] * size) // 2 * 2 + 1
        steps.append(T.RandomApply([T.GaussianBlur(k, (v['blur']['sigmaMin'], v['blur']['sigmaMax']))], p=v['blur']['prob']))
    if v['solarize']['prob'] > 0:
        steps.append(T.RandomSolarize(v['solarize']['threshold'] * 255, p=v['solarize']['prob']))
    steps += [T.ToTensor(), T.Normalize(views['mean'], views['std'])]
    return T.Compose(steps)


class Pairs(torch.utils.data.Dataset):
    """Every image under a folder (any depth), as two views."""

    def __init__(self, root, views):
        exts = ('.jpg', '.jpeg', '.png', '.webp', '.bmp')
        self.files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.lower().endswith(exts))
        if not self.files:
            sys.exit(f'{root}: no images')
        self.mode = 'L' if views['channels'] == 1 else 'RGB'
        self.t = [view_transform(views, 0), view_transform(views, 1)]

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        image = Image.open(self.files[i]).convert(self.mode)
        return self.t[0](image), self.t[1](image)


def byol_loss(p, z):
    """2 − 2·cos(p, z) per pair, averaged (§3.2); z is the target's, without gradient."""
    return (2 - 2 * (F.normalize(p, dim=1) * F.normalize(z.detach(), dim=1)).sum(dim=1)).mean()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('whole', help='byol export RUN --format safetensors --whole')
    ap.add_argument('images', help='a folder of images')
    ap.add_argument('--out', required=True, help='where to write the online encoder (torch.save of its state_dict)')
    ap.add_argument('--steps', type=int, default=1000)
    ap.add_argument('--batch', type=int, default=256)
    ap.add_argument('--lr', type=float, default=0.05, help='base learning rate per 256 images (SGD)')
    ap.add_argument('--wd', type=float, default=1.5e-6, help='weight decay (App. B)')
    ap.add_argument('--workers', type=int, default=4)
    ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args()
    if os.path.exists(a.out):
        sys.exit(f'{a.out} exists; choose another --out')
    torch.manual_seed(a.seed)
    device = 'cuda' if torch.cuda.is_available() else 'cpu'

    tensors, meta = read_safetensors(a.whole)
    info = json.loads(meta.get('byol', '{}'))
    if 'views' not in info:
        sys.exit(f'{a.whole}: not a whole-learner export (byol export RUN --format safetensors --whole)')
    if info.get('padding') == 'same':
        print('note: this encoder was trained padding as TensorFlow ("SAME"); torchvision pads symmetrically, so it starts from slightly different features')
    online = torch.nn.ModuleDict({'encoder': resnet(part(tensors, 'online.encoder.')),
                                  'projector': head(part(tensors, 'online.projector.')),
                                  'predictor': head(part(tensors, 'online.predictor.'))}).to(device)
    target = torch.nn.ModuleDict({'encoder': resnet(part(tensors, 'target.encoder.')),
                                  'projector': head(part(tensors, 'target.projector.'))}).to(device)
    for p in target.parameters():
        p.requires_grad_(False)

    data = Pairs(a.images, info['views'])
    loader = torch.utils.data.DataLoader(data, batch_size=min(a.batch, len(data)), shuffle=True, drop_last=True,
                                         num_workers=a.workers, persistent_workers=a.workers > 0)
    lr = a.lr * loader.batch_size / 256
    opt = torch.optim.SGD(online.parameters(), lr=lr, momentum=0.9, weight_decay=a.wd)
    warmup = max(1, a.steps // 100)
    tau_base = info.get('tau', 0.996)
    print(f'{len(data)} images, {a.steps} steps of {loader.batch_size} on {device}; lr {lr:g}, τ {tau_base} → 1')

    def online_prediction(x):
        return online['predictor'](online['projector'](online['encoder'](x)))

    def target_projection(x):
        with torch.no_grad():
            return target['projector'](target['encoder'](x))

    step = 0
    online.train()
    target.train()
    while step < a.steps:
        for v1, v2 in loader:
            v1, v2 = v1.to(device, non_blocking=True), v2.to(device, non_blocking=True)
            for g in opt.param_groups:
                g['lr'] = lr * min(1.0, (step + 1) / warmup)
            # Symmetrized: each view predicts the target's projection of the other (§3.2, eq. 2).
            loss = byol_loss(online_prediction(v1), target_projection(v2)) + byol_loss(online_prediction(v2), target_projection(v1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            # ξ ← τ·ξ + (1 − τ)·θ, τ = 1 − (1 − τ_base)(cos(πk/K) + 1)/2 (§3.3, eq. 1).
            tau = 1 - (1 - tau_base) * (math.cos(math.pi * step / a.steps) + 1) / 2
            with torch.no_grad():
                for name in ('encoder', 'projector'):
                    for t, o in zip(target[name].parameters(), online[name].parameters()):
                        t.mul_(tau).add_(o.detach(), alpha=1 - tau)
            step += 1
            if step % 10 == 0 or step == a.steps:
                print(f'step {step}/{a.steps}  loss {loss.item():.4f}  τ {tau:.4f}', flush=True)
            if step == a.steps:
                break

    # The online encoder is what BYOL keeps (§3.1); written atomically.
    tmp = f'{a.out}.{os.getpid()}.tmp'
    torch.save(online['encoder'].cpu().state_dict(), tmp)
    os.replace(tmp, a.out)
    print(f'wrote {a.out}; bring it back with: byol import {a.out} --out DIR --mean {",".join(map(str, info["views"]["mean"]))} --std {",".join(map(str, info["views"]["std"]))}')


if __name__ == '__main__':
    main()
