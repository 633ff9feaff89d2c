/**
 * Benchmark: BYOL's two views per second, and their share of a training step.
 *
 *   npm run build && node dist/bench/views.js [--reps 3] [--no-torch]
 *
 * Times ViewSampler.views (both views) on a 256-image 32-px batch (preset cifar) and a 64-image batch of
 * 256-px images cropped to 224 (preset imagenet), on the cpu and wasm backends, with the engine each backend
 * gets by default (js) and, at 32 px, the batched tensor engine for comparison. The share of a training step
 * is against the fastest BYOL step this machine runs today: PyTorch's (bench/torch_step.py, CIFAR ResNet-18,
 * batch 256, measured in this run), which our native backend (issue 5) is to match.
 */
import { spawnSync } from 'node:child_process';
import * as tf from '@tensorflow/tfjs-core';
import { ViewSampler, type ViewPresetName } from '../src/index.js';
import { useBackend } from '../src/node.js';

const reps = Number(process.argv[process.argv.indexOf('--reps') + 1]) || 3;

async function time(backend: 'cpu' | 'wasm', preset: ViewPresetName, shape: [number, number, number, number], engine: 'js' | 'tensor'): Promise<number> {
  await useBackend(backend);
  const sampler = new ViewSampler(preset, { seed: 1, engine });
  const images = tf.randomUniform(shape, 0, 256, 'int32', 1) as tf.Tensor4D;
  tf.dispose(sampler.views(images)); // warm-up
  const t0 = performance.now();
  for (let r = 0; r < reps; r++) {
    const [a, b] = sampler.views(images);
    await Promise.all([a.data(), b.data()]);
    tf.dispose([a, b]);
  }
  images.dispose();
  return (performance.now() - t0) / reps / 1000;
}

const rows: [string, 'cpu' | 'wasm', ViewPresetName, [number, number, number, number], 'js' | 'tensor'][] = [
  ['256 × 32 px (cifar)', 'cpu', 'cifar', [256, 32, 32, 3], 'js'],
  ['256 × 32 px (cifar)', 'wasm', 'cifar', [256, 32, 32, 3], 'js'],
  ['256 × 32 px (cifar)', 'cpu', 'cifar', [256, 32, 32, 3], 'tensor'],
  ['256 × 32 px (cifar)', 'wasm', 'cifar', [256, 32, 32, 3], 'tensor'],
  ['64 × 256→224 px (imagenet)', 'cpu', 'imagenet', [64, 256, 256, 3], 'js'],
  ['64 × 256→224 px (imagenet)', 'wasm', 'imagenet', [64, 256, 256, 3], 'js'],
];

console.log(`ViewSampler.views, both views, mean of ${reps} batches after a warm-up`);
const measured = new Map<string, number>();
for (const [name, backend, preset, shape, engine] of rows) {
  const secs = await time(backend, preset, shape, engine);
  measured.set(`${name}/${backend}/${engine}`, secs);
  const base = measured.get(`${name}/${backend}/js`) ?? secs;
  console.log(
    `${name.padEnd(28)} ${backend.padEnd(5)} ${engine.padEnd(7)} ${(secs * 1000).toFixed(0).padStart(7)} ms/batch ${(shape[0] / secs).toFixed(0).padStart(7)} images/s  ×${(base / secs).toFixed(3)} vs js`,
  );
}

if (!process.argv.includes('--no-torch')) {
  const r = spawnSync('/usr/bin/python3', [new URL('../../bench/torch_step.py', import.meta.url).pathname, '--batch', '256', '--steps', '2'], {
    encoding: 'utf8',
    env: { ...process.env, OPENBLAS_CORETYPE: 'SKYLAKEX' },
  });
  if (r.status !== 0) console.log(`PyTorch reference step unavailable (${(r.stderr || r.error?.message || '').trim().split('\n').pop()})`);
  else {
    const ref = JSON.parse(r.stdout.trim().split('\n').pop()!) as { images_per_s: number; threads: number };
    const step = 256 / ref.images_per_s;
    const views = Math.min(measured.get('256 × 32 px (cifar)/cpu/js')!, measured.get('256 × 32 px (cifar)/wasm/js')!);
    console.log(
      `PyTorch BYOL step, CIFAR ResNet-18, batch 256 (${ref.threads} threads): ${ref.images_per_s.toFixed(1)} images/s = ${step.toFixed(2)} s/step; ` +
        `views of that batch: ${(views * 1000).toFixed(0)} ms = ${((100 * views) / (views + step)).toFixed(1)} % of view + step time`,
    );
  }
}
