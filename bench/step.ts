/**
 * Benchmark: images/s of one full BYOL training step (two views, online forward and backward, target
 * forward, symmetric loss, LARS, EMA) on the tfjs backends available without a native addon.
 *
 *   npm run build && node dist/bench/step.js [--steps N]
 *
 * Prints, per configuration, images/s and the ratio against the first configuration of the same model
 * (measured in this process, so machine noise hits both alike), then PyTorch's images/s for the same CIFAR
 * ResNet-18 step (bench/torch_step.py, Debian's python3-torch, all cores) and our ratio to it.
 */
import { spawnSync } from 'node:child_process';
import { loadNativeAddon } from '../src/node.js';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { Byol, type ByolOptions } from '../src/index.js';
import { useBackend } from '../src/node.js';

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
  readonly options: ByolOptions;
  readonly shape: [number, number, number, number];
}

const heads = { projector: { hiddenDim: 1024, outputDim: 128 }, predictor: { hiddenDim: 1024 } };
const cases: Case[] = [
  { model: 'MLP 784-512-512, batch 128', backend: 'wasm', fastPath: false, options: { encoder: mlp, batchSize: 128, totalSteps: 100, ...heads }, shape: [128, 28, 28, 1] },
  { model: 'MLP 784-512-512, batch 128', backend: 'wasm', fastPath: true, options: { encoder: mlp, batchSize: 128, totalSteps: 100, ...heads }, shape: [128, 28, 28, 1] },
  { model: 'MLP 784-512-512, batch 128', backend: 'cpu', fastPath: false, options: { encoder: mlp, batchSize: 128, totalSteps: 100, ...heads }, shape: [128, 28, 28, 1] },
  { model: 'MLP 784-512-512, batch 128', backend: 'native', fastPath: false, options: { encoder: mlp, batchSize: 128, totalSteps: 100, ...heads }, shape: [128, 28, 28, 1] },
  { model: 'ConvNet 28×28, batch 64', backend: 'native', fastPath: false, options: { encoder: 'convnet', batchSize: 64, totalSteps: 100, ...heads }, shape: [64, 28, 28, 1] },
  // The paper's heads (4096 → 256), as bench/torch_step.py.
  { model: 'CIFAR ResNet-18, batch 64', backend: 'native', fastPath: false, options: { encoder: 'resnet18-cifar', batchSize: 64, totalSteps: 100 }, shape: [64, 32, 32, 3] },
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

const reference = new Map<string, number>();
console.log(`BYOL training step, ${steps} timed steps after one warm-up; images/s (ratio to the first row of the same model)`);
const native = loadNativeAddon() !== null;
let resnetNative = 0;
for (const c of cases) {
  if (c.backend === 'native' && !native) {
    console.log(`${c.model.padEnd(28)} native: addon not built, skipped`);
    continue;
  }
  const ips = await measure(c);
  if (c.model.startsWith('CIFAR ResNet-18')) resnetNative = ips;
  if (!reference.has(c.model)) reference.set(c.model, ips);
  const label = `${c.backend}${c.backend === 'wasm' ? (c.fastPath ? ' + transposed-matmul fast path' : ' (stock)') : ''}`;
  console.log(`${c.model.padEnd(28)} ${label.padEnd(40)} ${ips.toFixed(1).padStart(8)} img/s  ×${(ips / reference.get(c.model)!).toFixed(2)}`);
}

if (!process.argv.includes('--no-torch')) {
  const r = spawnSync('/usr/bin/python3', [new URL('../../bench/torch_step.py', import.meta.url).pathname, '--batch', '64', '--steps', String(steps)], {
    encoding: 'utf8',
    env: { ...process.env, OPENBLAS_CORETYPE: 'SKYLAKEX' },
  });
  if (r.status !== 0) console.log(`PyTorch reference unavailable (${(r.stderr || r.error?.message || '').trim().split('\n').pop()})`);
  else {
    const ref = JSON.parse(r.stdout.trim().split('\n').pop()!) as { images_per_s: number; threads: number };
    console.log(`${'CIFAR ResNet-18, batch 64'.padEnd(28)} ${`PyTorch ${ref.threads} threads (fp32)`.padEnd(40)} ${ref.images_per_s.toFixed(1).padStart(8)} img/s`);
    if (resnetNative) console.log(`native fp32 / PyTorch fp32 = ×${(resnetNative / ref.images_per_s).toFixed(2)} (target ≥ 1.0)`);
  }
}
