"""Checks against byol, run by byol's tests (test/companion.test.ts) on files byol wrote:

    python3 -m byol_torch.check step WHOLE VIEWS OUT [OUT64]
                                                            one step on views.K.1 / views.K.2; OUT = the learner after
                                                            it; OUT64 = the same step in float64 (float32's own error)
    python3 -m byol_torch.check features WHOLE IMAGES OUT   online (and target) encoder features of `images` (NHWC),
                                                            inference mode
    python3 -m byol_torch.check views WHOLE VIEWS DATASET   the views data.py draws for the steps VIEWS holds (byol
                                                            views wrote it), against it: the worst difference

Each prints one JSON line of what it measured.
"""
import json
import sys

import torch

from . import learner as L
from . import safetensors


def main(argv):
    torch.use_deterministic_algorithms(True)
    what, whole, data, out = argv[:4]
    lrn = L.load(whole)
    tensors, _ = safetensors.read(data)
    if what == 'step':
        k = lrn.step_count
        nchw = lambda t: t.permute(0, 3, 1, 2).contiguous()  # noqa: E731
        loss, tau, lr, collapse = lrn.step(nchw(tensors[f'views.{k}.1']), nchw(tensors[f'views.{k}.2']))
        lrn.export(out, {'by': 'byol_torch.check'})
        result = {'loss': loss, 'tau': tau, 'lr': lr, 'collapse': collapse, 'step': lrn.step_count}
        if len(argv) > 4:
            ref = L.load(whole)
            ref.to(torch.float64)
            result['loss64'] = ref.step(nchw(tensors[f'views.{k}.1']).double(), nchw(tensors[f'views.{k}.2']).double())[0]
            ref.export(argv[4], {'by': 'byol_torch.check', 'float64': True})
        print(json.dumps(result))
    elif what == 'views':
        from . import data as D
        dv = D.DataViews(out, lrn.info)
        steps = sorted({int(k.split('.')[1]) for k in tensors if k.startswith('views.')})
        worst, count = 0.0, 0
        for k in steps:
            v1, v2 = dv.views(k, 0, 1, 0, 1)
            for i, v in ((1, v1), (2, v2)):
                ref = tensors[f'views.{k}.{i}'].permute(0, 3, 1, 2)
                worst = max(worst, float((v - ref).abs().max()))
                count += v.numel()
        print(json.dumps({'steps': steps, 'values': count, 'worst': worst}))
    elif what == 'features':
        x = tensors['images'].permute(0, 3, 1, 2).contiguous()
        lrn.online.eval()
        result = {}
        with torch.no_grad():
            result['online'] = lrn.online.encoder(x)
            if lrn.target is not None:
                lrn.target.eval()
                result['target'] = lrn.target.encoder(x)
        safetensors.write(out, result)
        print(json.dumps({'features': list(result['online'].shape)}))
    else:
        sys.exit(f'unknown check {what!r}')


if __name__ == '__main__':
    main(sys.argv[1:])
