#!/usr/bin/python3
"""Fixtures for byol's PyTorch import and export tests, made with Debian's python3-torch and python3-torchvision.

  /usr/bin/python3 scripts/torch_fixtures.py make OUT_DIR
      Writes small random-weight checkpoints (batch-norm statistics made non-trivial) in the forms the field
      publishes, each with PyTorch's features of a fixed input (eval mode, the classifier removed):
        tv18.pth      torchvision resnet18 state dict
        tv50.pth      torchvision resnet50 state dict
        cifar18.pth   torchvision resnet18 with a CIFAR stem (3x3/1 conv1, no max-pool), as solo-learn and lightly
        solo.ckpt     a Lightning-style checkpoint: state_dict with backbone. and momentum_backbone. copies, plus
                      hyper-parameters (an argparse.Namespace) and an epoch
        lightly.pth   an nn.Sequential of torchvision's children (lightly's backbones): keys 0., 1., 4.0.conv1, ...
        hostile.pth   a torch.save archive whose pickle calls os.system (must be refused, never run)
      and OUT_DIR/fixtures.json: per file, the input [N, H, W, C] (NHWC), the features and the encoder.

  /usr/bin/python3 scripts/torch_fixtures.py compare FILE.safetensors FILE.pth [PREFIX]
      Loads a safetensors file (parsed here, no extra package) into torchvision's resnet of the right depth with
      strict=False and prints JSON: tensors compared, the largest difference to the state dict, missing and
      unexpected keys.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import torch
import torchvision


def randomize_batch_norm(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model


def features(model, size):
    model.eval()
    fc = model.fc
    model.fc = torch.nn.Identity()
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        f = model(x)
    model.fc = fc
    return {'x': x.permute(0, 2, 3, 1).flatten().tolist(), 'shape': [2, size, size, 3], 'features': f.flatten().tolist(), 'dim': f.shape[1]}


class Hostile:
    def __reduce__(self):
        return (os.system, ('echo pwned > ' + os.environ.get('BYOL_HOSTILE_MARK', '/tmp/byol-pwned'),))


def make(out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    meta = {}

    r18 = randomize_batch_norm(torchvision.models.resnet18())
    torch.save(r18.state_dict(), os.path.join(out, 'tv18.pth'))
    meta['tv18.pth'] = {'encoder': 'resnet18', **features(r18, 64)}

    r50 = randomize_batch_norm(torchvision.models.resnet50())
    torch.save(r50.state_dict(), os.path.join(out, 'tv50.pth'))
    meta['tv50.pth'] = {'encoder': 'resnet50', **features(r50, 64)}

    cifar = torchvision.models.resnet18()
    cifar.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    cifar.maxpool = torch.nn.Identity()
    randomize_batch_norm(cifar)
    torch.save(cifar.state_dict(), os.path.join(out, 'cifar18.pth'))
    meta['cifar18.pth'] = {'encoder': 'resnet18-cifar', **features(cifar, 32)}

    # solo-learn's BYOL: the online backbone and a momentum copy (different weights), Lightning's layout.
    momentum = randomize_batch_norm(torchvision.models.resnet18())
    state = {f'backbone.{k}': v for k, v in cifar.state_dict().items() if not k.startswith('fc.')}
    state.update({f'momentum_backbone.{k}': v for k, v in momentum.state_dict().items() if not k.startswith('fc.')})
    state['projector.0.weight'] = torch.randn(16, 512)
    torch.save({'epoch': 3, 'global_step': 1170, 'state_dict': state, 'hyper_parameters': argparse.Namespace(lr=1.0, batch_size=256)}, os.path.join(out, 'solo.ckpt'))
    meta['solo.ckpt'] = {'encoder': 'resnet18-cifar', 'prefix': 'backbone.', **features(cifar, 32)}

    # lightly: nn.Sequential(*list(resnet.children())[:-1]) under `backbone`.
    seq = torch.nn.Sequential(*list(r18.children())[:-1])
    torch.save({f'backbone.{k}': v for k, v in seq.state_dict().items()}, os.path.join(out, 'lightly.pth'))
    meta['lightly.pth'] = {'encoder': 'resnet18', 'prefix': 'backbone.', **features(r18, 64)}

    torch.save({'model': Hostile()}, os.path.join(out, 'hostile.pth'))
    with open(os.path.join(out, 'fixtures.json'), 'w') as f:
        json.dump(meta, f)


def compare(path, reference, prefix=''):
    raw = open(path, 'rb').read()
    n = struct.unpack('<Q', raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    tensors = {}
    for k, v in header.items():
        if k == '__metadata__':
            continue
        begin, end = v['data_offsets']
        tensors[k] = torch.from_numpy(np.frombuffer(data[begin:end], dtype='<f4').reshape(v['shape']).copy())
    state = torch.load(reference)
    state = state.get('state_dict', state)
    state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    bottleneck = 'layer1.0.conv3.weight' in state
    model = (torchvision.models.resnet50 if bottleneck else torchvision.models.resnet18)()
    if state['conv1.weight'].shape[-1] == 3:
        model.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    result = model.load_state_dict(tensors, strict=False)
    diff = max(float((tensors[k] - state[k].float()).abs().max()) for k in tensors)
    print(json.dumps({'tensors': len(tensors), 'maxDiff': diff, 'missing': result.missing_keys, 'unexpected': result.unexpected_keys}))


if __name__ == '__main__':
    if sys.argv[1] == 'make':
        make(sys.argv[2])
    else:
        compare(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else '')
