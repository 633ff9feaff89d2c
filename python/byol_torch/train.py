"""Continue a byol run in PyTorch, in one process or many (torchrun: DDP + byol's synchronized batch norm).

    byol export runs/cifar --format safetensors --whole --out cifar-whole.safetensors
    torchrun --nproc_per_node 8 python/continue_byol.py cifar-whole.safetensors --data cifar10:DATA --out cluster-run
    byol pretrain --from cluster-run/whole.safetensors --out runs/cifar-back

The run goes on at the exported step with byol's schedules (lr and τ of step k are byol's), optimizer state and both
networks; DIR/whole.safetensors is the same kind of file, which byol continues from (`byol pretrain --from`).
DIR/metrics.jsonl has byol's step records, so `byol plot` draws the continued curve. The views: drawn here as byol
draws them (--data, for CIFAR binaries and IDX files: byol's order, generator and operations, views.py and data.py),
or read from a file `byol views` wrote (--views, any dataset, image folders too).

Global batch = the run's batch (byol's learning rate scales with it): each of G processes takes batch / G images, as
K micro-batches with --accumulate K. Batch norm normalizes over all processes' images (the official code's
cross-replica batch norm); --per-device-bn normalizes each process's part alone (faster, not byol's function).
"""
import argparse
import json
import os
import sys
import time

import torch

from . import learner as L
from . import safetensors

MARK = 'byol-torch.json'


def fail(msg, code=2):
    print(f'byol_torch: {msg}', file=sys.stderr)
    sys.exit(code)


class ViewFile:
    """View batches byol wrote (`views.K.1`, `views.K.2`: step K's two views of the global batch, [B, H, W, C] as
    byol's ViewSampler made them). Each process takes its contiguous share of the batch."""

    def __init__(self, path):
        self.tensors, _ = safetensors.read(path)
        self.path = path

    def views(self, step, rank, world, micro, micros):
        try:
            v1, v2 = self.tensors[f'views.{step}.1'], self.tensors[f'views.{step}.2']
        except KeyError:
            fail(f'{self.path} holds no views for step {step}')
        b = v1.shape[0]
        if b % (world * micros):
            fail(f'{self.path}: a batch of {b} does not split into {world} processes x {micros} micro-batches')
        n = b // (world * micros)
        at = (rank * micros + micro) * n
        # NHWC (byol) -> NCHW (PyTorch)
        return v1[at:at + n].permute(0, 3, 1, 2).contiguous(), v2[at:at + n].permute(0, 3, 1, 2).contiguous()


def claim_out(out, resume):
    """A new or empty folder, or (resume) one this companion made. Never writes into a folder of someone else's."""
    if os.path.isdir(out) and os.listdir(out):
        if not os.path.exists(os.path.join(out, MARK)):
            fail(f'{out} holds files this companion did not write ({", ".join(sorted(os.listdir(out))[:4])}); choose another --out')
        if not resume:
            fail(f'{out} holds a continued run already; continue it with --resume, or choose another --out')
        return
    os.makedirs(os.path.join(out, 'checkpoints'), exist_ok=True)
    with open(os.path.join(out, MARK), 'w') as f:
        json.dump({'made_by': 'byol_torch', 'at': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, f)


def newest_checkpoint(out):
    d = os.path.join(out, 'checkpoints')
    names = sorted(n for n in os.listdir(d) if n.startswith('step-') and n.endswith('.safetensors')) if os.path.isdir(d) else []
    return os.path.join(d, names[-1]) if names else None


def main(argv=None):
    ap = argparse.ArgumentParser(prog='continue_byol', description=__doc__.split('\n')[0])
    ap.add_argument('whole', nargs='?', help='byol export RUN --format safetensors --whole (not with --resume)')
    ap.add_argument('--out', required=True, help='run folder: whole.safetensors, checkpoints/, metrics.jsonl')
    ap.add_argument('--resume', action='store_true', help="continue the run in --out from its newest checkpoint")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument('--views', help='view batches byol wrote (byol views: views.K.1 / views.K.2 per step K)')
    src.add_argument('--data', help="the run's dataset, read here and viewed as byol would (cifar10:DIR, cifar100:DIR, fashion-mnist[:DIR], mnist:DIR)")
    ap.add_argument('--steps', type=int, help='steps to run (default: to the end of the run)')
    ap.add_argument('--checkpoint-every', type=int, default=0, help='steps between checkpoints (default: only at the end)')
    ap.add_argument('--accumulate', type=int, default=1, help='micro-batches per step on each process (gradient accumulation)')
    ap.add_argument('--per-device-bn', action='store_true', help="batch norm over each process's images only")
    ap.add_argument('--bf16', action='store_true', help='CUDA: bf16 autocast (weights, optimizer and batch-norm statistics stay float32)')
    ap.add_argument('--device', choices=['auto', 'cpu', 'cuda'], default='auto')
    ap.add_argument('--log-every', type=int, default=10)
    a = ap.parse_args(argv)

    world = int(os.environ.get('WORLD_SIZE', '1'))
    rank = int(os.environ.get('RANK', '0'))
    local = int(os.environ.get('LOCAL_RANK', '0'))
    device = a.device if a.device != 'auto' else ('cuda' if torch.cuda.is_available() else 'cpu')
    if device == 'cuda':
        if not torch.cuda.is_available():
            fail('--device cuda: no CUDA device here')
        torch.cuda.set_device(local)
        device = f'cuda:{local}'
    if a.bf16 and not device.startswith('cuda'):
        fail('--bf16 needs a CUDA device')
    group = None
    if world > 1:
        import torch.distributed as dist
        dist.init_process_group('nccl' if device.startswith('cuda') else 'gloo')
        group = None if a.per_device_bn else dist.group.WORLD
    if a.accumulate < 1:
        fail('--accumulate must be at least 1')

    if rank == 0:
        claim_out(a.out, a.resume)
    if world > 1:
        torch.distributed.barrier()
    source = newest_checkpoint(a.out) if a.resume else a.whole
    if source is None:
        fail(f'{a.out}: no checkpoint to resume from' if a.resume else 'give the exported file (or --resume)')
    try:
        learner = L.load(source, device, group if world > 1 else None)
    except (L.ExportError, safetensors.SafetensorsError, OSError) as e:
        fail(str(e))
    if learner.options['beta'] > 0 and world > 1:
        fail('beta > 0 (in-batch negatives) is not split across processes here; run it in one process')
    if a.views:
        views = ViewFile(a.views)
    else:
        from . import data as D
        try:
            views = D.DataViews(a.data, learner.info)
        except (D.DataError, OSError) as e:
            fail(str(e))
    model = learner.online
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        model = DDP(learner.online, device_ids=[local] if device.startswith('cuda') else None, broadcast_buffers=False)

    first = learner.step_count
    last = learner.total_steps if a.steps is None else min(learner.total_steps, first + a.steps)
    if first >= learner.total_steps:
        fail(f'{source}: the run is at its end (step {first} of {learner.total_steps}); nothing to continue')
    if a.steps is not None and a.steps < 1:
        fail('--steps must be at least 1')
    batch = learner.options['batchSize']
    spe = learner.info.get('stepsPerEpoch') or learner.total_steps
    metrics = None
    if rank == 0:
        path = os.path.join(a.out, 'metrics.jsonl')
        if a.resume and os.path.exists(path):
            # Steps past the checkpoint resumed from run again: their lines go (atomically), as byol's resume does.
            kept = []
            for line in open(path):
                try:
                    if json.loads(line).get('step', 0) <= first:
                        kept.append(line if line.endswith('\n') else line + '\n')
                except ValueError:
                    pass  # a line cut short by a kill
            safetensors.write_atomic(path, ''.join(kept).encode())
        metrics = open(path, 'a')
    t0 = time.time()

    def save(path):
        if rank == 0:
            learner.export(path, {'by': 'byol_torch', 'processes': world, 'device': device, 'bf16': a.bf16, 'from': first, 'to': learner.step_count})

    while learner.step_count < last:
        k = learner.step_count
        loss_sum = 0.0
        collapse_sum = 0.0
        for m in range(a.accumulate):
            v1, v2 = (v.to(device, non_blocking=True) for v in views.views(k, rank, world, m, a.accumulate))
            sync = world > 1 and m < a.accumulate - 1
            ctx = model.no_sync() if sync else _null()
            with ctx:
                with (torch.autocast('cuda', dtype=torch.bfloat16) if a.bf16 else _null()):
                    loss, collapse = learner.loss_of(v1, v2, model)
                (loss / a.accumulate).backward()
            loss_sum += float(loss) / a.accumulate
            collapse_sum += float(collapse) / a.accumulate
        if world > 1:
            t = torch.tensor([loss_sum, collapse_sum], dtype=torch.float64, device=device)
            torch.distributed.all_reduce(t)
            loss_sum, collapse_sum = (t / world).tolist()
        lr, tau = learner.update()
        step = learner.step_count
        if metrics:
            elapsed = time.time() - t0
            rec = {'type': 'step', 'step': step, 'epoch': (step - 1) // spe + 1, 'loss': loss_sum, 'tau': tau, 'lr': lr,
                   'collapse': collapse_sum, 'imagesPerSecond': (step - first) * batch / max(elapsed, 1e-3), 'elapsed': elapsed}
            metrics.write(json.dumps(rec) + '\n')
            metrics.flush()
            if step % a.log_every == 0 or step == last:
                print(f'step {step}/{learner.total_steps}  loss {loss_sum:.6f}  τ {tau:.6f}  lr {lr:.6g}  {rec["imagesPerSecond"]:.1f} img/s', flush=True)
        if a.checkpoint_every and step % a.checkpoint_every == 0 and step < last:
            save(os.path.join(a.out, 'checkpoints', f'step-{step:08d}.safetensors'))
    save(os.path.join(a.out, 'checkpoints', f'step-{learner.step_count:08d}.safetensors'))
    save(os.path.join(a.out, 'whole.safetensors'))
    if rank == 0:
        print(f'wrote {os.path.join(a.out, "whole.safetensors")} at step {learner.step_count}; continue in byol with: byol pretrain --from {os.path.join(a.out, "whole.safetensors")} --out DIR', flush=True)
    if world > 1:
        torch.distributed.destroy_process_group()


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


if __name__ == '__main__':
    main()
