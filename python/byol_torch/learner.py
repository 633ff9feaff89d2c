"""The BYOL learner, as byol's src/byol/learner.ts steps it, on a state read from byol's whole-learner export.

One step (paper §3, byol's `Byol.step`): the target's projections of both views (training mode, no gradient), the
online projections and predictions, the symmetrized loss 2 - 2 cos (eq. 2), one optimizer update at the scheduled
learning rate, then the EMA of the target's weights with the scheduled τ (eq. 1). Schedules are closed forms of the
step, so a run continued here goes on where byol left it: lr and τ of step k are byol's for step k.
"""
import json
import math

import torch
import torch.nn.functional as F
from torch import nn

from . import nets, safetensors

FORMAT = 'byol-whole'
VERSION = 2


class ExportError(ValueError):
    """An export this companion cannot continue; the message says what and why."""


# ------------------------------------------------------------------ schedules (byol's src/train/schedule.ts, tau.ts)

def learning_rate_at(step, base, batch_size, warmup_steps, total_steps):
    """Linear warm-up from 0 to base x batch / 256 (App. B), then a cosine to 0 at total_steps (official schedule)."""
    peak = base * batch_size / 256
    if step < warmup_steps:
        return peak * step / warmup_steps
    decay = total_steps - warmup_steps
    if decay <= 0:
        return 0.0
    t = min(step - warmup_steps, decay) / decay
    return peak * 0.5 * (1 + math.cos(math.pi * t))


def tau_at(step, total_steps, base, schedule='cosine'):
    """τ_k = 1 - (1 - τ_base)(cos(πk/K) + 1)/2 (§3.3); `constant` keeps τ_base (the fixed-τ ablations)."""
    if schedule == 'constant':
        return base
    k = min(max(step, 0), total_steps)
    return 1 - (1 - base) * (math.cos(math.pi * k / total_steps) + 1) / 2


# ------------------------------------------------------------------ loss (byol's src/byol/loss.ts)

def l2_normalize(x, eps=1e-12):
    """x / max(|x|, sqrt(eps)): the official `l2_normalize` (zero rows give zeros, not NaN)."""
    return x * torch.rsqrt(torch.clamp_min((x * x).sum(-1, keepdim=True), eps))


def regression_loss(p, z):
    """|p̄ - z̄|² = 2 - 2 cos(p, z) per example (eq. 2)."""
    return ((l2_normalize(p) - l2_normalize(z)) ** 2).sum(-1)


def symmetric_loss(p1, p2, t1, t2):
    return regression_loss(p1, t2).mean() + regression_loss(p2, t1).mean()


def negatives_term(q, same, other, temperature):
    """The in-batch negatives term of InfoNCE^{α,β} (§5, Table 5b), one direction, as byol's `negativesTerm`."""
    q = l2_normalize(q)
    s = q @ l2_normalize(same).t() / temperature
    s = s - torch.eye(q.shape[0], device=q.device, dtype=s.dtype) * 1e9
    o = q @ l2_normalize(other).t() / temperature
    return torch.logsumexp(torch.cat([s, o], 1), 1).mean() * (2 * temperature)


def collapse_std(z):
    """Std over the batch of the l2-normalized projections, mean over dimensions (byol's `collapse` metric)."""
    return l2_normalize(z).var(0, unbiased=False).sqrt().mean()


# ------------------------------------------------------------------ optimizers (byol's src/train/optimizer.ts)

class Optimizer:
    """Updates a fixed list of parameters; biases and norm parameters (1-D) skip weight decay and LARS adaptation
    (App. B, official `exclude_bias_and_norm`). `slots` holds one tensor per parameter per slot name."""

    slot_names = ('mu',)

    def __init__(self, params, settings, slots=None, updates=0):
        self.params = list(params)
        self.excluded = [p.dim() <= 1 for p in self.params]
        self.s = settings
        self.updates = updates
        self.slots = slots or {n: [torch.zeros_like(p) for p in self.params] for n in self.slot_names}

    @torch.no_grad()
    def apply(self, lr):
        self.updates += 1
        for i, p in enumerate(self.params):
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            self.update(i, p, g.to(p.dtype), lr)


class Lars(Optimizer):
    """u = g + wd p; u <- u η|p|/|u| (trust 1 where either norm is 0); μ <- m μ + u; p <- p - lr μ (official `lars`)."""

    kind = 'lars'

    def update(self, i, p, g, lr):
        u = g
        if not self.excluded[i]:
            if self.s['weightDecay'] != 0:
                u = u + p * self.s['weightDecay']
            pn, un = torch.linalg.vector_norm(p), torch.linalg.vector_norm(u)
            trust = torch.where((pn > 0) & (un > 0), pn * self.s['larsEta'] / un, torch.ones_like(pn))
            u = u * trust
        mu = self.slots['mu'][i]
        mu.mul_(self.s['momentum']).add_(u)
        p.sub_(mu * lr)


class Sgd(Optimizer):
    """torch.optim.SGD's rule (dampening 0), decay skipped on 1-D parameters."""

    kind = 'sgd'

    def update(self, i, p, g, lr):
        d = g if self.excluded[i] or self.s['weightDecay'] == 0 else g + p * self.s['weightDecay']
        mu = self.slots['mu'][i]
        mu.mul_(self.s['momentum']).add_(d)
        p.sub_((d + mu * self.s['momentum'] if self.s['nesterov'] else mu) * lr)


class AdamW(Optimizer):
    """torch.optim.AdamW's rule (decoupled decay, bias correction by the update count), decay skipped on 1-D ones."""

    kind = 'adamw'
    slot_names = ('m', 'v')

    def update(self, i, p, g, lr):
        b1, b2, eps, wd = self.s['adamBeta1'], self.s['adamBeta2'], self.s['adamEpsilon'], self.s['weightDecay']
        m, v = self.slots['m'][i], self.slots['v'][i]
        m.mul_(b1).add_(g * (1 - b1))
        v.mul_(b2).add_(g * g * (1 - b2))
        c1, c2 = 1 - b1**self.updates, 1 - b2**self.updates
        denom = v.sqrt() / math.sqrt(c2) + eps
        decayed = p if self.excluded[i] or wd == 0 else p * (1 - lr * wd)
        p.copy_(decayed - (m / denom) * (lr / c1))


OPTIMIZERS = {'lars': Lars, 'sgd': Sgd, 'adamw': AdamW}


# ------------------------------------------------------------------ the networks

class Online(nn.Module):
    """θ: encoder -> projector -> predictor. One call takes both views, so DDP sees one forward per step; the order
    of the batch-norm updates is byol's: encoder+projector on view 1, on view 2, then the predictor on each."""

    def __init__(self, encoder, projector, predictor):
        super().__init__()
        self.encoder, self.projector, self.predictor = encoder, projector, predictor

    def forward(self, v1, v2):
        z1 = self.projector(self.encoder(v1))
        z2 = self.projector(self.encoder(v2))
        if self.predictor is None:
            return z1, z2, z1, z2
        return self.predictor(z1), self.predictor(z2), z1, z2


class Target(nn.Module):
    """ξ: encoder -> projector; its batch norms keep their own statistics, updated by its forward passes."""

    def __init__(self, encoder, projector):
        super().__init__()
        self.encoder, self.projector = encoder, projector

    def forward(self, x):
        return self.projector(self.encoder(x))


def _part(tensors, prefix):
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _load(module, state, what):
    want = module.state_dict()
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    if missing or unexpected:
        raise ExportError(f'{what}: missing {missing[:4]}, unexpected {unexpected[:4]} (an export of another architecture?)')
    for k, v in state.items():
        if tuple(v.shape) != tuple(want[k].shape):
            raise ExportError(f'{what}.{k} has shape {list(v.shape)}, the network needs {list(want[k].shape)}')
    module.load_state_dict(state)


class Learner:
    """byol's learner, rebuilt from a whole-learner export. `step(v1, v2)` is byol's `Byol.step`."""

    def __init__(self, tensors, info, device='cpu', group=None):
        if info.get('format') != FORMAT or not isinstance(info.get('version'), int):
            raise ExportError('not a byol whole-learner export with training state (byol export RUN --format safetensors --whole, byol 0.1 of 2026-12 or later)')
        if info['version'] > VERSION:
            raise ExportError(f'written by a newer byol (whole-learner format {info["version"]}; this companion reads {VERSION})')
        self.info = info
        o = self.options = info['learner']
        self.step_count = int(info['step'])
        bn = {'decay': o['batchNorm']['momentum'], 'eps': o['batchNorm']['epsilon']}
        arch = info['architecture']
        make_encoder = lambda: nets.encoder_from_spec(arch, bn)  # noqa: E731
        enc = make_encoder()
        d = enc.feature_dim
        out = o['projector']['outputDim']
        proj = lambda: nets.head(d, o['projector']['hiddenDim'], out, bn)  # noqa: E731
        pred = None if o['predictor'] is False else nets.head(out, o['predictor']['hiddenDim'], out, bn)
        self.online = Online(enc, proj(), pred)
        self.mode = o['mode']
        self.target = Target(make_encoder(), proj()) if self.mode == 'byol' else None
        _load(self.online.encoder, _part(tensors, 'online.encoder.'), 'online.encoder')
        _load(self.online.projector, _part(tensors, 'online.projector.'), 'online.projector')
        if pred is not None:
            _load(pred, _part(tensors, 'online.predictor.'), 'online.predictor')
        if self.target is not None:
            _load(self.target.encoder, _part(tensors, 'target.encoder.'), 'target.encoder')
            _load(self.target.projector, _part(tensors, 'target.projector.'), 'target.projector')
            for p in self.target.parameters():
                p.requires_grad_(False)
        self.online.to(device)
        if self.target is not None:
            self.target.to(device)
        nets.sync_batch_norm(self.online, group)
        if self.target is not None:
            nets.sync_batch_norm(self.target, group)
        # Parameters in byol's optimizer order (encoder, projector, predictor), by their export names.
        named = dict(('online.' + k, v) for k, v in self.online.named_parameters())
        order = info['parameters']
        if sorted(order) != sorted(named):
            raise ExportError(f'the export lists {len(order)} trainable weights, the rebuilt online network has {len(named)}')
        self.param_names = order
        self.params = [named[k] for k in order]
        ost = info['optimizer']
        cls = OPTIMIZERS.get(ost['kind'])
        if cls is None or ost['kind'] != o['optimizer']:
            raise ExportError(f'optimizer {ost["kind"]!r}: the companion steps lars, sgd and adamw')
        slots = {}
        for s in cls.slot_names:
            slots[s] = []
            for k, p in zip(order, self.params):
                t = tensors.get(f'optimizer.{s}.{k}')
                if t is None or tuple(t.shape) != tuple(p.shape):
                    raise ExportError(f'optimizer slot {s} of {k} is missing or has another shape')
                slots[s].append(t.to(device).clone())
        self.optimizer = cls(self.params, o, slots, int(ost['updates']))
        # Pairs (target, online) of the weights the EMA moves: the target's parameters by the same names.
        if self.target is not None:
            tnamed = dict(('target.' + k, v) for k, v in self.target.named_parameters())
            self.ema_pairs = [(tnamed['target.' + k[len('online.'):]], named[k]) for k in order if not k.startswith('online.predictor.')]

    def to(self, dtype):
        """Moves every weight, statistic and optimizer slot to `dtype` (float64: a reference of float32's error)."""
        self.online.to(dtype)
        if self.target is not None:
            self.target.to(dtype)
        self.optimizer.slots = {k: [t.to(dtype) for t in v] for k, v in self.optimizer.slots.items()}
        return self

    # -- schedules of this run
    def learning_rate_at(self, step):
        o = self.options
        return learning_rate_at(step, o['baseLearningRate'], o['batchSize'], o['warmupSteps'], o['totalSteps'])

    def tau_at(self, step):
        o = self.options
        return tau_at(step, o['totalSteps'], o['tau'], o['tauSchedule'])

    @property
    def total_steps(self):
        return self.options['totalSteps']

    def loss_of(self, v1, v2, online=None):
        """The step's loss and collapse metric on this process's part of the batch (gradients flow into θ only)."""
        online = online or self.online
        if self.target is not None:
            with torch.no_grad():
                t1, t2 = self.target(v1).float(), self.target(v2).float()
        p1, p2, z1, z2 = online(v1, v2)
        p1, p2, z1, z2 = p1.float(), p2.float(), z1.float(), z2.float()
        if self.target is None:  # SimSiam: the online projections under stop-gradient
            t1, t2 = z1.detach(), z2.detach()
        loss = symmetric_loss(p1, p2, t1, t2)
        beta = self.options['beta']
        if beta > 0:
            a = self.options['temperature']
            loss = loss + beta * (negatives_term(p1, t1, t2, a) + negatives_term(p2, t2, t1, a))
        with torch.no_grad():
            collapse = (collapse_std(z1) + collapse_std(z2)) / 2
        return loss, collapse

    def update(self):
        """The optimizer update and the EMA of step `step_count` (gradients already in .grad); returns (lr, τ)."""
        k = self.step_count
        lr, tau = self.learning_rate_at(k), self.tau_at(k)
        self.optimizer.apply(lr)
        for p in self.params:
            p.grad = None
        if self.target is not None and tau != 1:
            with torch.no_grad():
                for t, o in self.ema_pairs:
                    if tau == 0:
                        t.copy_(o)
                    else:
                        t.copy_(t * tau + o * (1 - tau))
        self.step_count = k + 1
        return lr, tau

    def step(self, v1, v2):
        """One whole step in this process (no DDP): (loss, τ, lr, collapse)."""
        loss, collapse = self.loss_of(v1, v2)
        loss.backward()
        lr, tau = self.update()
        return float(loss), tau, lr, float(collapse)

    # -- back to byol
    def export(self, path, extra=None):
        """Writes the whole learner as byol's export does (same names, metadata with this step and optimizer state)."""
        tensors = {}
        for prefix, m in (('online.encoder.', self.online.encoder), ('online.projector.', self.online.projector),
                          ('online.predictor.', self.online.predictor),
                          ('target.encoder.', self.target.encoder if self.target else None),
                          ('target.projector.', self.target.projector if self.target else None)):
            if m is not None:
                for k, v in m.state_dict().items():
                    tensors[prefix + k] = v
        for s, values in self.optimizer.slots.items():
            for k, v in zip(self.param_names, values):
                tensors[f'optimizer.{s}.{k}'] = v
        info = dict(self.info)
        info['step'] = self.step_count
        info['optimizer'] = {**info['optimizer'], 'updates': self.optimizer.updates}
        info['history'] = list(info.get('history', [])) + [extra or {}]
        safetensors.write(path, tensors, {'format': 'pt', 'byol': json.dumps(info)})


def load(path, device='cpu', group=None):
    tensors, meta = safetensors.read(path)
    if 'byol' not in meta:
        raise ExportError(f'{path}: no byol metadata (not written by byol export --whole)')
    try:
        info = json.loads(meta['byol'])
    except ValueError as e:
        raise ExportError(f'{path}: its byol metadata is not JSON ({e})') from None
    try:
        return Learner(tensors, info, device, group)
    except ExportError as e:
        raise ExportError(f'{path}: {e}') from None
