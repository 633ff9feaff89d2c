"""The datasets byol reads, read here the same way, in byol's order: CIFAR-10/100 binaries and IDX files (MNIST,
Fashion-MNIST; gzipped or not), the first `limit` images, an epoch's order as byol shuffles it. With views.py the
companion draws each step's views as `byol pretrain` would, so a run continued here trains on what it would have
trained on in byol. Image folders are not read here: byol decodes and resizes them with libvips (sharp), which this
side would not reproduce; use `byol views` files for them. Every size is checked before anything is allocated.
"""
import gzip

import os
import struct

import numpy as np

from . import views as V

class DataError(ValueError):
    """A dataset this reader cannot take; the message names the file or the spec."""

def _records(path, size):
    n = os.path.getsize(path)
    if n == 0 or n % size:
        raise DataError(f'{path}: {n} bytes, not a whole number of {size}-byte records')
    return np.fromfile(path, np.uint8).reshape(-1, size)

def _cifar(root, kind):
    if kind == 'cifar10':
        recs = np.concatenate([_records(os.path.join(root, f'data_batch_{i}.bin'), 3073) for i in range(1, 6)])
        pixels = recs[:, 1:]
    else:
        pixels = _records(os.path.join(root, 'train.bin'), 3074)[:, 2:]
    return pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)

def _idx(path):
    raw = gzip.open(path).read() if path.endswith('.gz') else open(path, 'rb').read()
    if len(raw) < 16 or struct.unpack('>I', raw[:4])[0] != 0x803:
        raise DataError(f'{path}: not an IDX file of images (magic 0x00000803)')
    n, h, w = struct.unpack('>III', raw[4:16])
    if len(raw) != 16 + n * h * w:
        raise DataError(f'{path}: {len(raw) - 16} pixel bytes for {n} images of {h}x{w}')
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, h, w, 1)

GREY = '/usr/share/datasets/fashion-mnist'

def open_images(spec):
    """A run's training images [N, H, W, C] uint8, from byol's dataset spec (KIND[:PATH][@SPLIT])."""
    body = spec.split('@')[0]
    split = spec.split('@')[1] if '@' in spec else 'train'
    kind, _, path = body.partition(':')
    if split != 'train':
        raise DataError(f'dataset {spec}: the companion reads training splits')
    if kind in ('cifar10', 'cifar100'):
        if not path:
            raise DataError(f'dataset {spec}: name the folder of the binaries (--data {kind}:DIR)')
        return _cifar(path, kind)
    if kind in ('fashion-mnist', 'mnist'):
        d = path or (GREY if kind == 'fashion-mnist' else '')
        for name in ('train-images-idx3-ubyte', 'train-images-idx3-ubyte.gz'):
            if d and os.path.exists(os.path.join(d, name)):
                return _idx(os.path.join(d, name))
        raise DataError(f'dataset {spec}: no train-images-idx3-ubyte(.gz) in {d or "(no folder given)"}; --data {kind}:DIR')
    if kind == 'folder':
        raise DataError(f'dataset {spec}: image folders are decoded by byol (libvips), not here; write the views with byol views and pass --views')
    raise DataError(f'dataset {spec}: the companion reads cifar10, cifar100, mnist and fashion-mnist')

class DataViews:
    """Each step's two views as byol draws them: the epoch's order (byol's shuffle of the run's seed and the epoch),
    the step's batch, the views generator from the export's state. Every process draws the whole global batch's random
    choices (so the stream is byol's) and makes the views of its own share only."""

    def __init__(self, spec, info):
        cfg = info['config']
        images = open_images(spec)
        if cfg.get('limit'):
            images = images[:cfg['limit']]
        self.images = images
        self.batch = cfg['batchSize']
        self.seed = cfg['seed']
        self.spe = len(images) // self.batch
        if self.spe != info.get('stepsPerEpoch'):
            raise DataError(f'dataset {spec}: {len(images)} images give {self.spe} steps per epoch of {self.batch}, the run had {info.get("stepsPerEpoch")} (another dataset?)')
        self.sampler = V.ViewSampler(info['views'], state=info['viewRng'])
        _, h, w, _ = images.shape
        # The generator is at byol's export; the steps run since (this companion's legs) drew their views first.
        for _ in range(sum(max(0, x.get('to', 0) - x.get('from', 0)) for x in info.get('history', []) if isinstance(x, dict))):
            self.sampler.draw(self.batch, h, w)
        self.next = info['step']
        self.cache = None
        self._order = (None, None)

    def order(self, epoch):
        if self._order[0] != epoch:
            self._order = (epoch, V.epoch_order(len(self.images), self.seed, epoch))
        return self._order[1]

    def views(self, step, rank, world, micro, micros):
        import torch
        if self.cache is None or self.cache[0] != step:
            if step != self.next:
                raise DataError(f'views asked for step {step}, the generator is at step {self.next}')
            order = self.order(step // self.spe)
            b = step % self.spe
            batch = self.images[order[b * self.batch:(b + 1) * self.batch]]
            _, h, w, _ = batch.shape
            self.cache = (step, batch, *self.sampler.draw(self.batch, h, w))
            self.next = step + 1
        _, batch, p1, p2 = self.cache
        if self.batch % (world * micros):
            raise DataError(f'a batch of {self.batch} does not split into {world} processes x {micros} micro-batches')
        n = self.batch // (world * micros)
        at = (rank * micros + micro) * n
        cfg = self.sampler.config
        x = (batch[at:at + n].astype(np.float32) / np.float32(255)).astype(np.float32)
        v1 = V.apply_view(x, p1[at:at + n], cfg, cfg['views'][0])
        v2 = V.apply_view(x, p2[at:at + n], cfg, cfg['views'][1])
        return torch.from_numpy(v1).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(v2).permute(0, 3, 1, 2).contiguous()

