"""byol's views in Python: the same random draws (byol's seeded generator, src/views/rng.ts, sample.ts) and the same
operations in the same order (src/views/js.ts): crop and resize (half-pixel centres; bilinear, or Keys-cubic with
a = -0.5 as TensorFlow), flip, colour jitter in each image's own order with TensorFlow's HSV formulas, grayscale,
Gaussian blur with zero padding, solarize, clip, normalize. A views config is the export's `views` (resolved, as byol
wrote it). NumPy, float64 arithmetic, float32 results: byol's views to float32 rounding.
"""
import math

import numpy as np

LUMA = (0.2989, 0.587, 0.114)
_M32 = 0xFFFFFFFF


def _imul(a, b):
    return (a * b) & _M32


class Rng:
    """mulberry32, as byol's Rng: one 32-bit state, saved and restored exactly."""

    def __init__(self, seed):
        self.s = seed & _M32

    def next(self):
        self.s = (self.s + 0x6D2B79F5) & _M32
        t = self.s
        t = _imul(t ^ (t >> 15), t | 1)
        t = (t ^ ((t + _imul(t ^ (t >> 7), t | 61)) & _M32)) & _M32
        return ((t ^ (t >> 14)) & _M32) / 4294967296

    def uniform(self, lo, hi):
        return lo + (hi - lo) * self.next()

    def int(self, lo, hi):
        return lo + math.floor(self.next() * (hi - lo + 1))

    def bernoulli(self, p):
        return self.next() < p

    def permutation(self, n):
        out = list(range(n))
        for i in range(n - 1, 0, -1):
            j = self.int(0, i)
            out[i], out[j] = out[j], out[i]
        return out


def _round(x):
    """JavaScript's Math.round: halves go up."""
    return math.floor(x + 0.5)


def sample_crop(height, width, crop, rng):
    """RandomResizedCrop's window, as byol's sampleCrop: (top, left, height, width)."""
    area = height * width
    lo, hi = math.log(crop['ratio'][0]), math.log(crop['ratio'][1])
    for _ in range(crop['attempts']):
        target = area * rng.uniform(crop['scale'][0], crop['scale'][1])
        aspect = math.exp(rng.uniform(lo, hi))
        w = _round(math.sqrt(target * aspect))
        h = _round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return rng.int(0, height - h), rng.int(0, width - w), h, w
    ratio = width / height
    w, h = width, height
    if ratio < crop['ratio'][0]:
        h = _round(w / crop['ratio'][0])
    elif ratio > crop['ratio'][1]:
        w = _round(h * crop['ratio'][1])
    return (height - h) // 2, (width - w) // 2, h, w


def sample_view_params(n, height, width, config, view, rng):
    """Every random choice for n images of one view, in byol's order (all drawn, applied or not)."""
    j = view['colorJitter']
    out = []
    for _ in range(n):
        p = {'crop': sample_crop(height, width, config['crop'], rng)}
        p['flip'] = rng.bernoulli(view['flip'])
        p['jitter'] = rng.bernoulli(j['prob'])
        perm = rng.permutation(4)
        p['order'] = perm if j['randomOrder'] else [0, 1, 2, 3]
        p['brightness'] = rng.uniform(-j['brightness'], j['brightness'])
        p['contrast'] = rng.uniform(1 - j['contrast'], 1 + j['contrast'])
        p['saturation'] = rng.uniform(1 - j['saturation'], 1 + j['saturation'])
        p['hue'] = rng.uniform(-j['hue'], j['hue'])
        p['grayscale'] = rng.bernoulli(view['grayscale'])
        p['blur'] = rng.bernoulli(view['blur']['prob'])
        p['sigma'] = rng.uniform(view['blur']['sigmaMin'], view['blur']['sigmaMax'])
        p['solarize'] = rng.bernoulli(view['solarize']['prob'])
        out.append(p)
    return out


def _keys(t):
    a = -0.5
    x = abs(t)
    if x <= 1:
        return ((a + 2) * x - (a + 3)) * x * x + 1
    if x < 2:
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return 0.0


def _resample_matrix(start, length, size, interpolation, reverse=False):
    """[size, length] weights taking the window [start, start + length) to `size` samples (half-pixel centres)."""
    m = np.zeros((size, length))
    for o in range(size):
        src = start + (o + 0.5) * length / size - 0.5
        base = math.floor(src)
        frac = src - base
        slot = size - 1 - o if reverse else o
        taps = [(base, 1 - frac), (base + 1, frac)] if interpolation == 'bilinear' else [(base - 1 + t, _keys(frac - (t - 1))) for t in range(4)]
        for i, w in taps:
            m[slot, min(max(i, start), start + length - 1) - start] += w
    return m


def _saturation_hue(x, factor, shift):
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = np.maximum(np.maximum(r, g), b)
    rng = v - np.minimum(np.minimum(r, g), b)
    s = np.where(v > 0, rng / np.where(v > 0, v, 1), 0)
    norm = 1 / (6 * np.where(rng > 0, rng, 1))
    h = np.where(r == v, norm * (g - b), np.where(g == v, norm * (b - r) + 2 / 6, norm * (r - g) + 4 / 6))
    h = np.where(rng > 0, np.where(h < 0, h + 1, h), 0)
    s = np.clip(s * factor, 0, 1)
    h = np.mod(np.mod(h + shift, 1) + 1, 1)
    c = s * v
    m = v - c
    dh = h * 6
    xx = c * (1 - np.abs(np.mod(dh, 2) - 1))
    cat = np.floor(dh)
    rr = np.where((cat == 0) | (cat == 5), c, np.where((cat == 1) | (cat == 4), xx, 0))
    gg = np.where((cat == 1) | (cat == 2), c, np.where((cat == 0) | (cat == 3), xx, 0))
    bb = np.where((cat == 3) | (cat == 4), c, np.where((cat == 2) | (cat == 5), xx, 0))
    return np.clip(np.stack([rr + m, gg + m, bb + m], -1), 0, 1)


def _blur(x, sigma, radius):
    raw = np.exp(-((np.arange(2 * radius + 1) - radius) ** 2) / (2 * sigma * sigma))
    k = raw / raw.sum()
    reach = min(radius, math.ceil(6 * sigma))
    s = x.shape[0]
    out = np.zeros_like(x)
    for t in range(-reach, reach + 1):  # rows, zero padding
        lo, hi = max(0, -t), min(s, s - t)
        out[lo:hi] += k[t + radius] * x[lo + t:hi + t]
    res = np.zeros_like(x)
    for t in range(-reach, reach + 1):  # columns
        lo, hi = max(0, -t), min(s, s - t)
        res[:, lo:hi] += k[t + radius] * out[:, lo + t:hi + t]
    return res


def apply_view(images01, params, config, view):
    """One view of a batch [N, H, W, C] in [0, 1] (float32, as byol reads it): [N, size, size, C] float32."""
    n, _, _, c = images01.shape
    size = config['size']
    radius = math.floor(size * view['blur']['kernelFraction'] / 2)
    mean = np.array(config['mean'])
    std = np.array(config['std'])
    out = np.empty((n, size, size, c), np.float32)
    for i, p in enumerate(params):
        top, left, h, w = p['crop']
        img = images01[i, top:top + h, left:left + w].astype(np.float64)
        rows = _resample_matrix(top, h, size, config['interpolation'])
        cols = _resample_matrix(left, w, size, config['interpolation'], p['flip'])
        x = np.einsum('oh,hwc->owc', rows, img)
        x = np.einsum('qw,owc->oqc', cols, x)
        if config['interpolation'] == 'bicubic':
            x = np.clip(x, 0, 1)
        if c == 3 and p['jitter']:
            for op in p['order']:
                if op == 0:
                    x = np.clip(x + p['brightness'], 0, 1)
                elif op == 1:
                    m = x.reshape(-1, 3).mean(0)
                    x = np.clip(p['contrast'] * (x - m) + m, 0, 1)
                elif op == 2:
                    x = _saturation_hue(x, p['saturation'], 0)
                else:
                    x = _saturation_hue(x, 1, p['hue'])
        if c == 3 and p['grayscale']:
            y = LUMA[0] * x[..., 0] + LUMA[1] * x[..., 1] + LUMA[2] * x[..., 2]
            x = np.stack([y, y, y], -1)
        if p['blur'] and radius >= 1:
            x = _blur(x, p['sigma'], radius)
        if p['solarize']:
            x = np.where(x >= view['solarize']['threshold'], 1 - x, x)
        out[i] = ((np.clip(x, 0, 1) - mean) / std).astype(np.float32)
    return out


class ViewSampler:
    """T and T' of a views config, drawing from byol's generator (seed = the run's seed + 1, or a saved state)."""

    def __init__(self, config, seed=0, state=None):
        self.config = config
        self.rng = Rng(seed)
        if state is not None:
            self.rng.s = state & _M32

    def draw(self, n, height, width):
        t, tp = self.config['views']
        return (sample_view_params(n, height, width, self.config, t, self.rng),
                sample_view_params(n, height, width, self.config, tp, self.rng))

    def views(self, images):
        """Two views of a batch of uint8 images [N, H, W, C] (0-255)."""
        n, h, w, _ = images.shape
        p1, p2 = self.draw(n, h, w)
        x = (images.astype(np.float32) / np.float32(255)).astype(np.float32)
        return apply_view(x, p1, self.config, self.config['views'][0]), apply_view(x, p2, self.config, self.config['views'][1])


def epoch_order(length, seed, epoch):
    """byol's shuffled order of one epoch (src/data/source.ts epochOrder)."""
    order = list(range(length))
    rng = Rng((_imul(seed & _M32, 0x9E3779B1) ^ _imul(epoch + 1, 0x85EBCA6B)) & _M32)
    for i in range(length - 1, 0, -1):
        j = rng.int(0, i)
        order[i], order[j] = order[j], order[i]
    return order
