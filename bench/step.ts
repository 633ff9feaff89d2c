/**
 * Benchmark: images/s of one full BYOL training step (two views, online forward and backward, target
 * forward, symmetric loss, LARS, EMA), per backend, next to PyTorch doing the same step on the same cores.
 *
 *   npm run build && node dist/bench/step.js [--steps N] [--quick] [--no-torch] [--only BACKEND]
 *
 * For each model — the 28×28 ConvNet at batch 64 and the CIFAR ResNet-18 at batch 64 and 256 (paper heads
 * 4096 → 256), and an MLP at batch 128 for the backends that cannot train convolutions — it prints images/s of
 * each backend and of bench/torch_step.py (Debian's python3-torch, all cores, fp32 and bf16 autocast) measured in
 * this run, right after ours, and the ratios native / PyTorch. `--quick` leaves out batch 256; `--only wasm` (or cpu,
 * native) runs one backend's rows. The wasm rows use byol's wasm kernels (src/backend.ts, src/wasm-kernels.ts) except
 * the stock MLP row.
 */
import { spawnSync } from 'node:child_process';
import { loadNativeAddon } from '../src/node.js';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { Byol, type ByolOptions } from '../src/index.js';
import { setNativePrecision, useBackend } from '../src/node.js';

const steps = Number(process.argv[process.argv.indexOf('--steps') + 1]) || 3;

const mlp = () =>
  tfl.sequential({
    layers: [
      tfl.layers.flatten({ inputShape: [28, 28, 1] }),
      tfl.layers.dense({ units: 512, useBias: false }),
      tfl.layers.batchNormalization({ momentum: 0.9, epsilon: 1e-5 }),
      tfl.layers.reLU(),
      tfl.layers.dense({ units: 512, useBias: false }),
      tfl.layers.batchNormalization({ momentum: 0.9, epsilon: 1e-5 }),
      tfl.layers.reLU(),
    ],
  });

interface Case {
  readonly model: string;
  readonly backend: 'cpu' | 'wasm' | 'native';
  readonly fastPath: boolean;
  /** Native only: bf16 convolutions and matrix products. */
  readonly bf16?: boolean;
  readonly options: ByolOptions;
  readonly shape: [number, number, number, number];
  /** The PyTorch reference of the same step: model and batch for bench/torch_step.py. */
  readonly torch?: [string, number];
}

const heads = { projector: { hiddenDim: 1024, outputDim: 128 }, predictor: { hiddenDim: 1024 } };
const mlpOptions: ByolOptions = { encoder: mlp, batchSize: 128, totalSteps: 100, ...heads };
const cases: Case[] = [
  { model: 'MLP 784-512-512, batch 128', backend: 'wasm', fastPath: false, options: mlpOptions, shape: [128, 28, 28, 1] },
  { model: 'MLP 784-512-512, batch 128', backend: 'wasm', fastPath: true, options: mlpOptions, shape: [128, 28, 28, 1] },
  { model: 'MLP 784-512-512, batch 128', backend: 'cpu', fastPath: false, options: mlpOptions, shape: [128, 28, 28, 1] },
  { model: 'MLP 784-512-512, batch 128', backend: 'native', fastPath: false, options: mlpOptions, shape: [128, 28, 28, 1] },
  // The paper's heads (4096 → 256) from here on, as bench/torch_step.py.
  { model: 'ConvNet 28×28, batch 64', backend: 'wasm', fastPath: true, options: { encoder: 'convnet', batchSize: 64, totalSteps: 100 }, shape: [64, 28, 28, 1], torch: ['convnet', 64] },
  { model: 'ConvNet 28×28, batch 64', backend: 'native', fastPath: false, options: { encoder: 'convnet', batchSize: 64, totalSteps: 100 }, shape: [64, 28, 28, 1], torch: ['convnet', 64] },
  // wasm's heap holds at most 4 GiB: batch 32 takes 3.8, batch 64 does not fit.
  { model: 'CIFAR ResNet-18, batch 16', backend: 'wasm', fastPath: true, options: { encoder: 'resnet18-cifar', batchSize: 16, totalSteps: 100 }, shape: [16, 32, 32, 3] },
  { model: 'CIFAR ResNet-18, batch 16', backend: 'native', fastPath: false, options: { encoder: 'resnet18-cifar', batchSize: 16, totalSteps: 100 }, shape: [16, 32, 32, 3] },
  { model: 'CIFAR ResNet-18, batch 64', backend: 'native', fastPath: false, options: { encoder: 'resnet18-cifar', batchSize: 64, totalSteps: 100 }, shape: [64, 32, 32, 3], torch: ['resnet18-cifar', 64] },
  { model: 'CIFAR ResNet-18, batch 256', backend: 'native', fastPath: false, options: { encoder: 'resnet18-cifar', batchSize: 256, totalSteps: 100 }, shape: [256, 32, 32, 3], torch: ['resnet18-cifar', 256] },
];

async function measure(c: Case): Promise<number> {
  if (c.backend === 'wasm') {
    // useBackend installs the fast path; the baseline run goes first, before it is installed.
    if (c.fastPath) await useBackend('wasm');
    else {
      await import('@tensorflow/tfjs-backend-wasm').then(async (w) => {
        const { createRequire } = await import('node:module');
        const { dirname, join } = await import('node:path');
        w.setWasmPaths(join(dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + '/');
      });
      await tf.setBackend('wasm');
    }
  } else await useBackend(c.backend);
  if (c.backend === 'native') setNativePrecision(c.bf16 ? 'bf16' : 'fp32');
  const learner = new Byol({ ...c.options, seed: 1 });
  const x = tf.randomUniform(c.shape, 0, 1, 'float32', 1);
  const y = tf.reverse(x, 2);
  await learner.step(x, y); // warm-up: kernels, weights' first upload
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) await learner.step(x, y);
  const secs = (performance.now() - t0) / 1000;
  tf.dispose([x, y]);
  learner.dispose();
  return (steps * c.shape[0]) / secs;
}

const quick = process.argv.includes('--quick');
const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : null;
const withTorch = !process.argv.includes('--no-torch');

function torchStep(model: string, batch: number, bf16: boolean): number | string {
  const args = [new URL('../../bench/torch_step.py', import.meta.url).pathname, '--model', model, '--batch', String(batch), '--steps', String(steps)];
  const r = spawnSync('/usr/bin/python3', bf16 ? [...args, '--bf16'] : args, { encoding: 'utf8', env: { ...process.env, OPENBLAS_CORETYPE: 'SKYLAKEX' } });
  if (r.status !== 0) return (r.stderr || r.error?.message || 'failed').trim().split('\n').pop()!;
  return (JSON.parse(r.stdout.trim().split('\n').pop()!) as { images_per_s: number }).images_per_s;
}

const reference = new Map<string, number>();
const row = (model: string, label: string, value: string) => console.log(`${model.padEnd(28)} ${label.padEnd(40)} ${value}`);
console.log(`BYOL training step, ${steps} timed steps after one warm-up; images/s (ratio to the first row of the same model)`);
const native = loadNativeAddon() !== null;
for (const c of cases) {
  if ((quick && c.shape[0] === 256) || (only !== null && c.backend !== only)) continue;
  const label = `${c.backend}${c.backend === 'wasm' ? (c.fastPath ? " + byol's wasm kernels" : ' (stock)') : c.backend === 'native' ? ' fp32' : ''}`;
  if (c.backend === 'native' && !native) {
    row(c.model, label, 'addon not built, skipped');
    continue;
  }
  let ips: number;
  try {
    ips = await measure(c);
  } catch (e) {
    row(c.model, label, `cannot train: ${(e as Error).message.split('\n')[0]}`);
    continue;
  }
  if (!reference.has(c.model)) reference.set(c.model, ips);
  row(c.model, label, `${ips.toFixed(1).padStart(8)} img/s  ×${(ips / reference.get(c.model)!).toFixed(2)}`);
  if (c.backend !== 'native' || !c.torch) continue;
  let bf16 = 0;
  if (setNativePrecision('bf16')) {
    bf16 = await measure({ ...c, bf16: true });
    row(c.model, 'native bf16 (fp32 master weights)', `${bf16.toFixed(1).padStart(8)} img/s  ×${(bf16 / reference.get(c.model)!).toFixed(2)}`);
  } else row(c.model, 'native bf16', 'not available on this CPU');
  setNativePrecision('fp32');
  if (!withTorch) continue;
  for (const useBf16 of [false, true]) {
    const ref = torchStep(c.torch[0], c.torch[1], useBf16);
    const name = `PyTorch ${useBf16 ? 'bf16 autocast' : 'fp32'}`;
    if (typeof ref === 'string') row(c.model, name, `unavailable (${ref})`);
    else if (!useBf16) row(c.model, name, `${ref.toFixed(1).padStart(8)} img/s  native fp32 / this = ×${(ips / ref).toFixed(2)} (target ≥ 1.0)`);
    else row(c.model, name, `${ref.toFixed(1).padStart(8)} img/s  native bf16 / this = ${bf16 ? `×${(bf16 / ref).toFixed(2)} (target ≥ 1.0)` : 'n/a'}`);
  }
}
