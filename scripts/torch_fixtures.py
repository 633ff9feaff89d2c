#!/usr/bin/python3
"""Fixtures for byol's PyTorch import and export tests, made with Debian's python3-torch and python3-torchvision.

  /usr/bin/python3 scripts/torch_fixtures.py make OUT_DIR
      Writes small random-weight checkpoints (batch-norm statistics made non-trivial) in the forms the field
      publishes, each with PyTorch's features of a fixed input (eval mode, the classifier removed):
        tv18.pth      torchvision resnet18 state dict
        tv50.pth      torchvision resnet50 state dict
        cifar18.pth   torchvision resnet18 with a CIFAR stem (3x3/1 conv1 padded by 1, no max-pool), as lightly
        solo.ckpt     a solo-learn CIFAR checkpoint (stem padded by 2, its OmegaConf config in hyper_parameters):
                      Lightning's state_dict with backbone. and momentum_backbone. copies, and an epoch
        solo-unknown.ckpt  the same with a config that names no dataset (its stem's padding cannot be known)
        wide.pth      a torchvision wide-ResNet layout (width_per_group 128), refused
        lightly.pth   an nn.Sequential of torchvision's children (lightly's backbones): keys 0., 1., 4.0.conv1, ...
        hostile.pth   a torch.save archive whose pickle calls os.system (must be refused, never run)
        hostile.pkl   a plain protocol-2 pickle that does the same
        bad-shape.pth a torchvision ResNet-18 state dict with one kernel of the wrong shape
        official.pkl  an official BYOL checkpoint's structure (deepmind-research byol/utils/checkpointing.py): a
                      protocol-2 pickle of {experiment_state: _ByolExperimentState(online_params, target_params,
                      online_state, target_state, opt_state), step, rng}, opt_state the optax chain state of its
                      lars() (AddWeightDecayState, ScaleByLarsState(mu), optax ScaleState), Haiku module names, a ResNet-50 with
                      TensorFlow's SAME padding; its features computed here by a PyTorch forward that pads as SAME
      and OUT_DIR/fixtures.json: per file, the input [N, H, W, C] (NHWC), the features and the encoder.

  /usr/bin/python3 scripts/torch_fixtures.py whole FILE.safetensors [EMB.npy IMAGES_DIR]
      Loads a whole-learner export (byol export --whole) with the PyTorch companion (python/byol_torch) — both networks
      and the optimizer's slots, strictly — and prints JSON: "loaded" or the error, and the architecture it rebuilt.
      Given byol embed's output (EMB.npy beside
      EMB.jsonl) and the folder its ids are relative to, also runs the online encoder on those images (eval mode, the
      export's input normalization) and reports the largest difference relative to the largest feature.

  /usr/bin/python3 scripts/torch_fixtures.py compare FILE.safetensors FILE.pth [PREFIX]
      Loads a safetensors file (parsed here, no extra package) into torchvision's resnet of the right depth with
      strict=False and prints JSON: tensors compared, the largest difference to the state dict, missing and
      unexpected keys.
"""
import argparse
import copy
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

    # solo-learn's BYOL on CIFAR: the online backbone and a momentum copy (different weights), Lightning's layout, its
    # CIFAR stem padded by 2 (solo-learn's Conv2d(3, 64, 3, stride=1, padding=2)) and its config in hyper_parameters
    # as Lightning keeps it: an OmegaConf DictConfig (Debian's python3-omegaconf; a plain dict where it is missing).
    solo = copy.deepcopy(cifar)
    solo.conv1.padding = (2, 2)
    momentum = randomize_batch_norm(torchvision.models.resnet18())
    state = {f'backbone.{k}': v for k, v in solo.state_dict().items() if not k.startswith('fc.')}
    state.update({f'momentum_backbone.{k}': v for k, v in momentum.state_dict().items() if not k.startswith('fc.')})
    state['projector.0.weight'] = torch.randn(16, 512)
    cfg = {'method': 'byol', 'backbone': {'name': 'resnet18', 'kwargs': {}}, 'data': {'dataset': 'cifar10', 'num_classes': 10}, 'optimizer': {'name': 'lars', 'lr': 1.0, 'kwargs': {'eta': 0.02}}}
    try:
        from omegaconf import OmegaConf
        cfg = OmegaConf.create(cfg)
    except ImportError:
        pass
    torch.save({'epoch': 3, 'global_step': 1170, 'state_dict': state, 'hyper_parameters': {'cfg': cfg}}, os.path.join(out, 'solo.ckpt'))
    meta['solo.ckpt'] = {'encoder': 'resnet18-cifar', 'prefix': 'backbone.', 'stemPadding': 2, **features(solo, 32)}
    # The same checkpoint without a dataset in its config: the stem's padding cannot be known.
    cfg_unknown = {'method': 'byol', 'backbone': {'name': 'resnet18'}}
    torch.save({'state_dict': state, 'hyper_parameters': {'cfg': cfg_unknown}}, os.path.join(out, 'solo-unknown.ckpt'))

    # torchvision's wide ResNet layout (width_per_group 128, as wide_resnet50_2), kept small: byol refuses it, naming why.
    wide = torchvision.models.resnet.ResNet(torchvision.models.resnet.Bottleneck, [1, 1, 1, 1], width_per_group=128)
    torch.save(wide.state_dict(), os.path.join(out, 'wide.pth'))

    # lightly: nn.Sequential(*list(resnet.children())[:-1]) under `backbone`.
    seq = torch.nn.Sequential(*list(r18.children())[:-1])
    torch.save({f'backbone.{k}': v for k, v in seq.state_dict().items()}, os.path.join(out, 'lightly.pth'))
    meta['lightly.pth'] = {'encoder': 'resnet18', 'prefix': 'backbone.', **features(r18, 64)}

    torch.save({'model': Hostile()}, os.path.join(out, 'hostile.pth'))
    bad = dict(r18.state_dict())
    bad['layer2.0.conv1.weight'] = torch.zeros(128, 32, 3, 3)
    torch.save(bad, os.path.join(out, 'bad-shape.pth'))
    import pickle
    with open(os.path.join(out, 'hostile.pkl'), 'wb') as f:
        pickle.dump({'experiment_state': Hostile()}, f, protocol=2)

    official = randomize_batch_norm(torchvision.models.resnet50())
    write_official(official.state_dict(), os.path.join(out, 'official.pkl'))
    meta['official.pkl'] = {'encoder': 'resnet50', 'official': True, **same_padding_features(official.state_dict(), 64)}
    with open(os.path.join(out, 'fixtures.json'), 'w') as f:
        json.dump(meta, f)


def to_haiku(state, net='res_net50'):
    """torchvision names and layouts -> the official code's Haiku modules (params, state)."""
    params, hstate = {}, {}
    def module(key):
        parts = key.split('.')
        if parts[0] == 'conv1':
            return f'{net}/~/initial_conv', 'conv'
        if parts[0] == 'bn1':
            return f'{net}/~/initial_batchnorm', 'bn'
        group, block, kind = int(parts[0][5:]) - 1, parts[1], parts[2]
        base = f'{net}/~/block_group_{group}/~/block_{block}/~/'
        if kind == 'downsample':
            return base + ('shortcut_conv' if parts[3] == '0' else 'shortcut_batchnorm'), 'conv' if parts[3] == '0' else 'bn'
        return base + ('conv_' if kind.startswith('conv') else 'batchnorm_') + str(int(kind[-1]) - 1), 'conv' if kind.startswith('conv') else 'bn'
    for key, value in state.items():
        if key.startswith('fc.') or key.endswith('num_batches_tracked'):
            continue
        name, kind = module(key.rsplit('.', 1)[0])
        field = key.rsplit('.', 1)[1]
        v = value.numpy().astype(np.float32)
        if kind == 'conv':
            params.setdefault(name, {})['w'] = np.ascontiguousarray(v.transpose(2, 3, 1, 0))  # OIHW -> HWIO
        elif field in ('weight', 'bias'):
            params.setdefault(name, {})['scale' if field == 'weight' else 'offset'] = v.reshape(1, 1, 1, -1)
        else:
            ema = 'mean_ema' if field == 'running_mean' else 'var_ema'
            hstate[f'{name}/~/{ema}'] = {'average': v.reshape(1, 1, 1, -1), 'counter': np.array(100, np.int32), 'hidden': v.reshape(1, 1, 1, -1) * 0.5}
    # The heads and the online classifier, which an import leaves out.
    params['projector/~/linear'] = {'w': np.random.rand(2048, 8).astype(np.float32), 'b': np.zeros(8, np.float32)}
    params['classifier'] = {'w': np.random.rand(2048, 10).astype(np.float32), 'b': np.zeros(10, np.float32)}
    return params, hstate


def write_official(state, path):
    import pickle
    import types
    from typing import Any, NamedTuple
    # The experiment's state class, under the module name the official pickles carry.
    module = types.ModuleType('byol.byol_experiment')
    sys.modules.setdefault('byol', types.ModuleType('byol'))
    sys.modules['byol.byol_experiment'] = module

    class _ByolExperimentState(NamedTuple):
        online_params: Any
        target_params: Any
        online_state: Any
        target_state: Any
        opt_state: Any
    _ByolExperimentState.__module__ = 'byol.byol_experiment'
    _ByolExperimentState.__qualname__ = '_ByolExperimentState'
    module._ByolExperimentState = _ByolExperimentState
    # The optimizer's state as the official code's optax chain leaves it (byol/utils/optimizers.py: lars() = chain of
    # add_weight_decay, scale_by_lars, optax.scale), its classes under the module names the pickles carry.
    def state_class(module_name, name, fields):
        mod = sys.modules.get(module_name) or types.ModuleType(module_name)
        sys.modules[module_name] = mod
        for parent in module_name.split('.')[:-1]:
            sys.modules.setdefault(parent, types.ModuleType(parent))
        cls = NamedTuple(name, [(f, Any) for f in fields])
        cls.__module__, cls.__qualname__ = module_name, name
        setattr(mod, name, cls)
        return cls
    AddWeightDecayState = state_class('byol.utils.optimizers', 'AddWeightDecayState', [])
    ScaleByLarsState = state_class('byol.utils.optimizers', 'ScaleByLarsState', ['mu'])
    ScaleState = state_class('optax._src.transform', 'ScaleState', [])
    params, hstate = to_haiku(state)
    # The target network and the momentum share the online arrays here (the pickle stores them once): a small file.
    opt_state = (AddWeightDecayState(), ScaleByLarsState(mu=params), ScaleState())
    experiment = _ByolExperimentState(online_params=params, target_params=params, online_state=hstate, target_state=hstate, opt_state=opt_state)
    with open(path, 'wb') as f:
        pickle.dump({'experiment_state': experiment, 'step': 1000, 'rng': np.array([0, 42], np.uint32)}, f, protocol=2)


def same_padding_features(state, size):
    """A ResNet-50 forward (eval mode) that pads as TensorFlow's SAME, as the official code's Haiku network."""
    import torch.nn.functional as F

    def same(x, k, s, value=0.0):
        pads = []
        for d in (3, 2):
            n = x.shape[d]
            total = max((-(-n // s) - 1) * s + k - n, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads, value=value)

    def conv(x, name, s):
        w = state[name + '.weight']
        return F.conv2d(same(x, w.shape[-1], s), w, stride=s)

    def bn(x, name):
        return F.batch_norm(x, state[name + '.running_mean'], state[name + '.running_var'], state[name + '.weight'], state[name + '.bias'], False, 0.0, 1e-5)

    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        y = F.relu(bn(conv(x, 'conv1', 2), 'bn1'))
        y = F.max_pool2d(same(y, 3, 2, float('-inf')), 3, 2)
        for g, blocks in enumerate([3, 4, 6, 3]):
            for b in range(blocks):
                p = f'layer{g + 1}.{b}'
                s = 2 if b == 0 and g > 0 else 1
                short = bn(conv(y, p + '.downsample.0', s), p + '.downsample.1') if b == 0 else y
                z = F.relu(bn(conv(y, p + '.conv1', 1), p + '.bn1'))
                z = F.relu(bn(conv(z, p + '.conv2', s), p + '.bn2'))
                z = bn(conv(z, p + '.conv3', 1), p + '.bn3')
                y = F.relu(z + short)
        f = y.mean(dim=(2, 3))
    return {'x': x.permute(0, 2, 3, 1).flatten().tolist(), 'shape': [2, size, size, 3], 'features': f.flatten().tolist(), 'dim': f.shape[1]}


def companion():
    """python/byol_torch, the PyTorch companion users run; the whole-learner check goes through its loader."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'python'))
    from byol_torch import learner, safetensors
    return learner, safetensors


def whole(path, embeddings=None, images=None):
    learner, safetensors = companion()
    tensors, meta = safetensors.read(path)
    info = json.loads(meta.get('byol', '{}'))
    result = {'metadata': sorted(info)}
    # A strict load of both networks and the optimizer's slots: every tensor has its place and every place its tensor.
    try:
        lrn = learner.load(path)
        result['learner'] = 'loaded'
        result['architecture'] = lrn.info['architecture']
    except learner.ExportError as e:
        result['learner'] = str(e)
    if embeddings and result['learner'] == 'loaded':
        # byol embed's features of the images against the companion's encoder (eval mode, the run's normalization).
        from PIL import Image
        from torchvision import transforms as T
        ids = [json.loads(line)['id'] for line in open(embeddings[:-4] + '.jsonl')]
        views = info['views']
        t = T.Compose([T.ToTensor(), T.Normalize(views['mean'], views['std'])])
        mode = 'L' if views['channels'] == 1 else 'RGB'
        x = torch.stack([t(Image.open(os.path.join(images, i)).convert(mode)) for i in ids])
        lrn.online.eval()
        with torch.no_grad():
            f = lrn.online.encoder(x)
        ours = torch.from_numpy(np.load(embeddings))
        result['features'] = {'n': len(ids), 'maxRelDiff': float((f - ours).abs().max() / f.abs().max())}
    print(json.dumps(result))


def compare(path, reference, prefix=''):
    tensors, _ = companion()[1].read(path)
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
    elif sys.argv[1] == 'whole':
        whole(*sys.argv[2:5])
    else:
        compare(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else '')
