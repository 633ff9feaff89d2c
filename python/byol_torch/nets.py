"""byol's networks in PyTorch, computing byol's function: the same layers, names, padding and batch norm.

- ResNets (byol's src/nets/resnet.ts): torchvision's module names (conv1, bn1, layer1.0.conv1, layer1.0.downsample.0,
  ...) so byol's export loads by name. With padding "same" every convolution and the stem's max-pool pad as
  TensorFlow does (Haiku and the official BYOL code): at stride 2 on an even input 0 before and 1 after, which no
  fixed `padding=` of torch.nn.Conv2d gives, so the pad is computed per input size. With padding "torch" they pad
  (k - 1) / 2 on every side (byol's models imported from PyTorch).
- The ConvNet (src/nets/convnet.ts) as an nn.Sequential numbered as byol's layers are.
- The projector and predictor (paper §3.3): Linear -> BatchNorm -> ReLU -> Linear without bias.

Batch norm is byol's (tfjs-layers' and the official code's): batch mean and biased variance in training, moving
averages updated as v <- v - (v - batch)(1 - decay) with the biased variance (torch.nn.BatchNorm stores the unbiased
one, so it is not used). Across processes it normalizes over the global batch (the official code's
`cross_replica_axis`): sums go through torch.distributed.nn.functional.all_reduce, which carries gradients, so
G processes x B/G equal one process x B.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn


def same_pads(size, kernel, stride):
    """TensorFlow's "SAME" padding of one axis: (before, after)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv2d(nn.Module):
    """A bias-free 2-D convolution padding as byol's layer does ("same" or "torch"). Its one parameter is `weight`."""

    def __init__(self, cin, cout, kernel, stride=1, padding='same', pad=None):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, cin, kernel, kernel))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.kernel, self.stride, self.padding = kernel, stride, padding
        # An explicit symmetric pad (solo-learn's CIFAR stem pads 2) overrides both rules.
        self.pad = pad

    def forward(self, x):
        if self.pad is not None:
            return F.conv2d(x, self.weight, stride=self.stride, padding=self.pad)
        if self.padding == 'torch':
            return F.conv2d(x, self.weight, stride=self.stride, padding=(self.kernel - 1) // 2)
        top, bottom = same_pads(x.shape[2], self.kernel, self.stride)
        left, right = same_pads(x.shape[3], self.kernel, self.stride)
        if top == bottom and left == right:
            return F.conv2d(x, self.weight, stride=self.stride, padding=(top, left))
        return F.conv2d(F.pad(x, (left, right, top, bottom)), self.weight, stride=self.stride)


class BatchNorm(nn.Module):
    """byol's batch norm over the channel axis (dim 1) of [N, C] or [N, C, H, W]; see the module's doc.

    `decay` is byol's momentum (0.9: the official `bn_config`), the weight of the old moving average. The statistics
    are computed in float32 whatever the input's precision (under bf16 autocast too)."""

    group = None  # a torch.distributed process group to normalize across, or None (set by sync_batch_norm)

    def __init__(self, channels, decay=0.9, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer('running_mean', torch.zeros(channels))
        self.register_buffer('running_var', torch.ones(channels))
        self.decay, self.eps = decay, eps

    def _shape(self, x):
        return (1, -1) + (1,) * (x.dim() - 2)

    def forward(self, x):
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        shape = self._shape(x)
        if not self.training:
            inv = torch.rsqrt(self.running_var + self.eps)
            return (x - self.running_mean.view(shape)) * (inv * self.weight).view(shape) + self.bias.view(shape)
        dims = [0] + list(range(2, x.dim()))
        count = x.numel() // x.shape[1]
        if self.group is None:
            mean = x.mean(dims)
            var = ((x - mean.view(shape)) ** 2).mean(dims)
        else:
            # Two passes over the global batch, as one process computes them (mean, then mean squared deviation).
            from torch.distributed.nn.functional import all_reduce
            import torch.distributed as dist
            n = count * dist.get_world_size(self.group)
            mean = all_reduce(x.sum(dims), group=self.group) / n
            var = all_reduce(((x - mean.view(shape)) ** 2).sum(dims), group=self.group) / n
        with torch.no_grad():
            for buf, value in ((self.running_mean, mean), (self.running_var, var)):
                buf.sub_((buf - value.detach()) * (1 - self.decay))
        return (x - mean.view(shape)) * (torch.rsqrt(var + self.eps) * self.weight).view(shape) + self.bias.view(shape)


def sync_batch_norm(module, group):
    """Makes every byol BatchNorm in `module` normalize across `group` (None: this process's batch only)."""
    for m in module.modules():
        if isinstance(m, BatchNorm):
            m.group = group
    return module


class MaxPoolSame(nn.Module):
    """The ImageNet stem's 3x3/2 max-pool. It follows a ReLU (every value >= 0), so zero padding is -inf padding."""

    def __init__(self, padding):
        super().__init__()
        self.padding = padding

    def forward(self, x):
        if self.padding == 'torch':
            return F.max_pool2d(x, 3, 2, padding=1)
        top, bottom = same_pads(x.shape[2], 3, 2)
        left, right = same_pads(x.shape[3], 3, 2)
        return F.max_pool2d(F.pad(x, (left, right, top, bottom)), 3, 2)


class Block(nn.Module):
    """A ResNet v1 block (basic or bottleneck; the stride on the 3x3 convolution), byol's residual sum + ReLU."""

    def __init__(self, cin, planes, stride, bottleneck, padding, bn):
        super().__init__()
        out = planes * 4 if bottleneck else planes
        self.bottleneck = bottleneck
        if bottleneck:
            self.conv1, self.bn1 = Conv2d(cin, planes, 1, 1, padding), BatchNorm(planes, **bn)
            self.conv2, self.bn2 = Conv2d(planes, planes, 3, stride, padding), BatchNorm(planes, **bn)
            self.conv3, self.bn3 = Conv2d(planes, out, 1, 1, padding), BatchNorm(out, **bn)
        else:
            self.conv1, self.bn1 = Conv2d(cin, planes, 3, stride, padding), BatchNorm(planes, **bn)
            self.conv2, self.bn2 = Conv2d(planes, planes, 3, 1, padding), BatchNorm(planes, **bn)
        self.downsample = None
        if stride != 1 or cin != out:
            self.downsample = nn.Sequential(Conv2d(cin, out, 1, stride, padding), BatchNorm(out, **bn))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        if self.bottleneck:
            y = F.relu(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
        else:
            y = self.bn2(self.conv2(y))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(y + shortcut)


BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3), 200: (3, 24, 36, 3)}


class ResNet(nn.Module):
    """byol's ResNet trunk ending in global average pooling: [N, C, H, W] -> [N, 512w or 2048w]."""

    def __init__(self, depth, stem='imagenet', width=1, channels=3, padding='same', bn=None, stem_pad=None):
        super().__init__()
        if depth not in BLOCKS:
            raise ValueError(f'ResNet depth must be one of {sorted(BLOCKS)}; got {depth}')
        bn = bn or {}
        bottleneck = depth >= 50
        c = 64 * width
        if stem == 'imagenet':
            self.conv1 = Conv2d(channels, c, 7, 2, padding)
            self.maxpool = MaxPoolSame(padding)
        else:
            self.conv1 = Conv2d(channels, c, 3, 1, padding, pad=stem_pad)
            self.maxpool = None
        self.bn1 = BatchNorm(c, **bn)
        for g, count in enumerate(BLOCKS[depth]):
            planes = 64 * 2**g * width
            blocks = []
            for b in range(count):
                blocks.append(Block(c, planes, 2 if b == 0 and g > 0 else 1, bottleneck, padding, bn))
                c = planes * 4 if bottleneck else planes
            self.add_module(f'layer{g + 1}', nn.Sequential(*blocks))
        self.feature_dim = c

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            x = self.maxpool(x)
        for g in range(1, 5):
            x = getattr(self, f'layer{g}')(x)
        return x.mean((2, 3))


class GlobalAvgPool(nn.Module):
    def forward(self, x):
        return x.mean((2, 3))


def convnet(channels=(32, 64, 128), in_channels=1, bn=None):
    """byol's ConvNet (ours; src/nets/convnet.ts): three 3x3 conv -> BN -> ReLU stages, 2x2 max-pools after the first
    two, global average pooling. Indices as byol's layers: 0 conv, 1 bn, 2 relu, 3 pool, 4 conv, ..., 11 pool."""
    bn = bn or {}
    layers = []
    cin = in_channels
    for i, c in enumerate(channels):
        layers += [Conv2d(cin, c, 3, 1, 'same'), BatchNorm(c, **bn), nn.ReLU()]
        layers.append(nn.MaxPool2d(2, 2) if i < 2 else GlobalAvgPool())
        cin = c
    model = nn.Sequential(*layers)
    model.feature_dim = cin
    return model


def head(inputs, hidden, outputs, bn=None):
    """Projector / predictor (§3.3, official `MLP`): Linear(bias) -> BatchNorm -> ReLU -> Linear(no bias)."""
    return nn.Sequential(nn.Linear(inputs, hidden), BatchNorm(hidden, **(bn or {})), nn.ReLU(), nn.Linear(hidden, outputs, bias=False))


def encoder_from_spec(spec, bn=None):
    """The encoder an export describes (its metadata's `architecture`)."""
    kind = spec.get('kind')
    if kind == 'resnet':
        return ResNet(spec['depth'], spec['stem'], spec.get('width', 1), spec['inputShape'][2], spec.get('padding', 'same'), bn, spec.get('stemPad'))
    if kind == 'convnet':
        return convnet(tuple(spec['channels']), spec['inputShape'][2], bn)
    raise ValueError(f'architecture {kind!r}: the companion rebuilds byol\'s ResNets and ConvNet only')
