/**
 * Benchmark: images/s of one full BYOL training step (two views, online forward and backward, target forward,
 * symmetric loss, LARS, EMA), per backend, next to PyTorch at its best doing the same step on the same cores.
 *
 *   npm run build && node dist/bench/step.js [--steps N] [--warmup N] [--quick] [--no-torch] [--only BACKEND] [--match REGEX] [--no-load]
 *
 * Models: the 28×28 ConvNet at batch 64, the CIFAR ResNet-18 at batch 16, 64 and 256, the paper's ResNet-50 (224 px)
 * at batch 32 — paper heads 4096 → 256 — and an MLP at batch 128 for the backends that cannot train convolutions.
 * Every measurement runs in a fresh child process, one after the other, so that each starts with the machine's
 * memory released and reports its own peak resident memory. The PyTorch peer is bench/torch_step.py at its best:
 * OpenBLAS loaded (extracted from Debian's package where not installed), every layout × views configuration timed, the
 * fastest named. Each native and PyTorch row prints GFLOP/s (the step's multiply-adds counted by torch_step.py's
 * hooks: 8 forward-equivalents per image) and its share of the machine's GEMM peak: oneDNN's 2048³ product through
 * the addon in the same run, fp32 or bf16 (PyTorch's own matmul runs on OpenBLAS, slower, and is printed beside). A last row times the ResNet-18 step with one competing process of two busy threads (`--no-load` skips it).
 * The ConvNet rows time 20 steps (both engines). `--quick` leaves out batch 256 and ResNet-50; `--only wasm` (or cpu, native) runs one backend's rows; `--match` the
 * models whose name matches. Every engine runs --warmup untimed steps first (default 2). ResNet-50 times one step after the warm-up, and PyTorch's search there tries both layouts
 * with the views separate (each PyTorch configuration of it takes minutes here).
 */
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { competitor } from './competitor.js';
import { cpus } from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { Byol, type ByolOptions } from '../src/index.js';
import { loadNativeAddon, setNativePrecision, useBackend } from '../src/node.js';

const steps = Number(process.argv[process.argv.indexOf('--steps') + 1]) || 3;
/**
 * Untimed steps first, for every engine alike (PyTorch's script is given the same): the native backend's buffer pool
 * learns a step's working set over the first two steps (a fresh ResNet-18 bf16 process: 1 416, 1 102, 965, 926, 902 ms
 * — faults and new buffers in the first two, then steady), so one warm-up timed part of that settling (±10 %).
 */
const warmup = process.argv.includes('--warmup') ? Math.max(0, Math.floor(Number(process.argv[process.argv.indexOf('--warmup') + 1]) || 0)) : 2;

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
  readonly options: ByolOptions | 'mlp';
  readonly shape: [number, number, number, number];
  /** The PyTorch reference of the same step: model and batch for bench/torch_step.py. */
  readonly torch?: [string, number];
  /** Left out by --quick. */
  readonly long?: boolean;
  /**
   * Timed steps (default --steps): one for ResNet-50 (minutes per configuration), twenty for the ConvNet (a 0.1 s step:
   * three steps after one warm-up timed mostly the first steps' buffer allocations and JIT, ±15 % run to run); and
   * PyTorch's search (default: layouts × views).
   */
  readonly steps?: number;
  readonly torchSearch?: 'all' | 'layouts';
}

const heads = { projector: { hiddenDim: 1024, outputDim: 128 }, predictor: { hiddenDim: 1024 } };
const cases: Case[] = [
  { model: 'MLP 784-512-512, batch 128', backend: 'wasm', fastPath: false, options: 'mlp', shape: [128, 28, 28, 1] },
  { model: 'MLP 784-512-512, batch 128', backend: 'wasm', fastPath: true, options: 'mlp', shape: [128, 28, 28, 1] },
  { model: 'MLP 784-512-512, batch 128', backend: 'cpu', fastPath: false, options: 'mlp', shape: [128, 28, 28, 1] },
  { model: 'MLP 784-512-512, batch 128', backend: 'native', fastPath: false, options: 'mlp', shape: [128, 28, 28, 1] },
  // The paper's heads (4096 → 256) from here on, as bench/torch_step.py.
  { model: 'ConvNet 28×28, batch 64', backend: 'wasm', fastPath: true, options: { encoder: 'convnet', batchSize: 64, totalSteps: 100 }, shape: [64, 28, 28, 1], torch: ['convnet', 64], steps: 20 },
  { model: 'ConvNet 28×28, batch 64', backend: 'native', fastPath: false, options: { encoder: 'convnet', batchSize: 64, totalSteps: 100 }, shape: [64, 28, 28, 1], torch: ['convnet', 64], steps: 20 },
  // wasm's heap holds at most 4 GiB: batch 32 takes 3.8, batch 64 does not fit.
  { model: 'CIFAR ResNet-18, batch 16', backend: 'wasm', fastPath: true, options: { encoder: 'resnet18-cifar', batchSize: 16, totalSteps: 100 }, shape: [16, 32, 32, 3] },
  { model: 'CIFAR ResNet-18, batch 16', backend: 'native', fastPath: false, options: { encoder: 'resnet18-cifar', batchSize: 16, totalSteps: 100 }, shape: [16, 32, 32, 3] },
  { model: 'CIFAR ResNet-18, batch 64', backend: 'native', fastPath: false, options: { encoder: 'resnet18-cifar', batchSize: 64, totalSteps: 100 }, shape: [64, 32, 32, 3], torch: ['resnet18-cifar', 64] },
  { model: 'CIFAR ResNet-18, batch 256', backend: 'native', fastPath: false, options: { encoder: 'resnet18-cifar', batchSize: 256, totalSteps: 100 }, shape: [256, 32, 32, 3], torch: ['resnet18-cifar', 256], long: true },
  { model: 'ResNet-50 224 px, batch 32', backend: 'native', fastPath: false, options: { encoder: { name: 'resnet50', inputShape: [224, 224, 3] }, batchSize: 32, totalSteps: 100 }, shape: [32, 224, 224, 3], torch: ['resnet50', 32], long: true, steps: 1, torchSearch: 'layouts' },
];

interface Measured {
  readonly imagesPerSecond: number;
  readonly maxRssMb: number;
}

/** In the child: one case's images/s. */
async function measure(c: Case, bf16: boolean): Promise<Measured> {
  if (c.backend === 'wasm') {
    // useBackend installs the fast path; the baseline runs without it.
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
  if (c.backend === 'native' && !setNativePrecision(bf16 ? 'bf16' : 'fp32')) throw new Error('bf16 not available on this CPU');
  const options: ByolOptions = c.options === 'mlp' ? { encoder: mlp, batchSize: 128, totalSteps: 100, ...heads } : c.options;
  const learner = new Byol({ ...options, seed: 1 });
  const x = tf.randomUniform(c.shape, 0, 1, 'float32', 1);
  const y = tf.reverse(x, 2);
  for (let w = 0; w < warmup; w++) await learner.step(x, y); // warm-up: kernels, weights' first upload, the pool
  const n = c.steps ?? steps;
  const t0 = performance.now();
  for (let s = 0; s < n; s++) await learner.step(x, y);
  const secs = (performance.now() - t0) / 1000;
  tf.dispose([x, y]);
  learner.dispose();
  return { imagesPerSecond: (n * c.shape[0]) / secs, maxRssMb: process.resourceUsage().maxRSS / 1024 };
}

/** In the child: the addon's 2048³ matrix product, GFLOP/s. */
function gemm(bf16: boolean): number {
  const a = loadNativeAddon();
  if (!a || !a.setBf16(bf16)) return NaN;
  const n = 2048;
  const x = Float32Array.from({ length: n * n }, (_, i) => ((i * 7919) % 1000) / 1000);
  const out = new Float32Array(n * n);
  a.matMul(x, x, out, 1, 1, n, n, n, false, false);
  // The peak: the fastest of 12 products timed one by one (a mean over a few moved by ±5 % run to run with the
  // machine's noise, and the "% of GEMM" figures with it).
  let best = Infinity;
  for (let r = 0; r < 12; r++) {
    const t0 = performance.now();
    a.matMul(x, x, out, 1, 1, n, n, n, false, false);
    best = Math.min(best, performance.now() - t0);
  }
  return (2 * n ** 3) / (best / 1000) / 1e9;
}

const self = fileURLToPath(import.meta.url);

if (process.argv.includes('--child')) {
  const spec = JSON.parse(process.argv[process.argv.indexOf('--child') + 1]!) as { index: number; bf16: boolean } | { gemm: boolean };
  const result = 'gemm' in spec ? { gflops: gemm(spec.gemm) } : await measure(cases[spec.index]!, spec.bf16);
  console.log(JSON.stringify(result));
  process.exit(0);
}

/** One measurement in a fresh process (its memory released when it ends); an error as a string. */
function inChild(spec: object): Promise<Record<string, number> | string> {
  return new Promise((done) => {
    const p = spawn(process.execPath, [self, '--child', JSON.stringify(spec), '--steps', String(steps)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('close', (code) => {
      if (code !== 0) return done((err.trim().split('\n').pop() ?? `exit ${code}`).slice(0, 160));
      done(JSON.parse(out.trim().split('\n').pop()!) as Record<string, number>);
    });
  });
}

interface TorchResult {
  images_per_s: number;
  config: string;
  blas: string;
  flops_per_image: number;
  gflops: number;
  gemm_gflops: number;
  max_rss_mb: number;
}

function torchStep(c: Case, bf16: boolean): TorchResult | string {
  const [model, batch] = c.torch!;
  const args = [new URL('../../bench/torch_step.py', import.meta.url).pathname, '--model', model, '--batch', String(batch), '--steps', String(c.steps ?? steps), '--warmup', String(warmup), '--search', c.torchSearch ?? 'all'];
  const r = spawnSync('/usr/bin/python3', bf16 ? [...args, '--bf16'] : args, { encoding: 'utf8' });
  if (r.status !== 0) return (r.stderr || r.error?.message || 'failed').trim().split('\n').pop()!;
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as TorchResult;
}

const quick = process.argv.includes('--quick');
const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : null;
const match = process.argv.includes('--match') ? new RegExp(process.argv[process.argv.indexOf('--match') + 1]!) : null;
const withTorch = !process.argv.includes('--no-torch');
const native = loadNativeAddon() !== null;
const reference = new Map<string, number>();
const row = (model: string, label: string, value: string) => console.log(`${model.padEnd(28)} ${label.padEnd(44)} ${value}`);
const cpu = cpus()[0]?.model ?? 'unknown CPU';
const flags = (() => {
  try {
    const f = (spawnSync('grep', ['-m1', '^flags', '/proc/cpuinfo'], { encoding: 'utf8' }).stdout ?? '').split(/\s+/);
    return ['avx2', 'avx512f', 'avx512_bf16', 'amx_bf16'].filter((x) => f.includes(x)).join(' ');
  } catch {
    return '';
  }
})();
console.log(`BYOL training step, ${steps} timed steps after ${warmup} warm-up steps (every engine), each in a fresh process; ${cpus().length} cores, ${cpu} (${flags || 'ISA unknown'})`);
const peak = { fp32: NaN, bf16: NaN };
if (native && only !== 'wasm' && only !== 'cpu') {
  for (const p of ['fp32', 'bf16'] as const) {
    const r = await inChild({ gemm: p === 'bf16' });
    peak[p] = typeof r === 'string' ? NaN : r['gflops']!;
  }
  console.log(`native 2048³ GEMM: fp32 ${peak.fp32.toFixed(0)} GFLOP/s, bf16 ${Number.isNaN(peak.bf16) ? 'n/a' : `${peak.bf16.toFixed(0)} GFLOP/s`}`);
}
console.log('images/s (ratio to the first row of the same model); GFLOP/s and share of the GEMM peak (fp32 or bf16); peak resident memory');
let loadCase: { c: Case; idle: number } | null = null;
for (const [index, c] of cases.entries()) {
  if ((quick && c.long) || (only !== null && c.backend !== only) || (match && !match.test(c.model))) continue;
  const label = `${c.backend}${c.backend === 'wasm' ? (c.fastPath ? " + byol's wasm kernels" : ' (stock)') : c.backend === 'native' ? ' fp32' : ''}`;
  if (c.backend === 'native' && !native) {
    row(c.model, label, 'addon not built, skipped');
    continue;
  }
  // PyTorch first (its FLOP count serves both), then ours.
  const torch = c.torch && withTorch && c.backend === 'native' ? ([false, true] as const).map((b) => torchStep(c, b)) : null;
  const flopsPerImage = torch?.find((t): t is TorchResult => typeof t !== 'string')?.flops_per_image ?? NaN;
  const gf = (ips: number, peakGflops: number) =>
    Number.isNaN(flopsPerImage) ? '' : `  ${((ips * flopsPerImage) / 1e9).toFixed(0).padStart(4)} GFLOP/s (${((100 * ips * flopsPerImage) / 1e9 / peakGflops).toFixed(0)} % of GEMM)`;
  const results: Partial<Record<'fp32' | 'bf16', number>> = {};
  for (const bf16 of c.backend === 'native' && c.torch ? [false, true] : [false]) {
    const m = await inChild({ index, bf16 });
    const name = bf16 ? 'native bf16 (fp32 master weights)' : label;
    if (typeof m === 'string') {
      row(c.model, name, `cannot train: ${m}`);
      continue;
    }
    const ips = m['imagesPerSecond']!;
    results[bf16 ? 'bf16' : 'fp32'] = ips;
    if (!reference.has(c.model)) reference.set(c.model, ips);
    row(c.model, name, `${ips.toFixed(1).padStart(8)} img/s  ×${(ips / reference.get(c.model)!).toFixed(2)}${c.backend === 'native' ? gf(ips, bf16 ? peak.bf16 : peak.fp32) : ''}  ${m['maxRssMb']!.toFixed(0)} MB`);
    if (c.model.startsWith('CIFAR ResNet-18, batch 64') && !bf16) loadCase = { c, idle: ips };
  }
  if (results.fp32 && results.bf16 && results.bf16 < results.fp32) row(c.model, '', `note: bf16 slower than fp32 here (×${(results.bf16 / results.fp32).toFixed(2)})`);
  for (const [i, t] of (torch ?? []).entries()) {
    const bf16 = i === 1;
    const name = `PyTorch ${bf16 ? 'bf16 autocast' : 'fp32'}, best`;
    if (typeof t === 'string') {
      row(c.model, name, `unavailable (${t})`);
      continue;
    }
    const ours = results[bf16 ? 'bf16' : 'fp32'];
    row(
      c.model,
      `${name} (${t.config})`,
      `${t.images_per_s.toFixed(1).padStart(8)} img/s  native ${bf16 ? 'bf16' : 'fp32'} / this = ${ours ? `×${(ours / t.images_per_s).toFixed(2)}` : 'n/a'}  ${t.gflops.toFixed(0).padStart(4)} GFLOP/s (${((100 * t.gflops) / (bf16 ? peak.bf16 : peak.fp32)).toFixed(0)} % of GEMM; its own matmul ${t.gemm_gflops.toFixed(0)})  ${t.max_rss_mb.toFixed(0)} MB${/reference BLAS/.test(t.blas) ? '  [no OpenBLAS: not its best]' : ''}`,
    );
  }
}
if (loadCase && !process.argv.includes('--no-load')) {
  const rival = competitor();
  await new Promise((r) => setTimeout(r, 500));
  try {
    const m = await inChild({ index: cases.indexOf(loadCase.c), bf16: false });
    if (typeof m === 'string') row(loadCase.c.model, 'native fp32, one competing 2-thread process', `failed: ${m}`);
    else row(loadCase.c.model, 'native fp32, one competing 2-thread process', `${m['imagesPerSecond']!.toFixed(1).padStart(8)} img/s  ${(m['imagesPerSecond']! / loadCase.idle).toFixed(2)} of idle (target ≥ 0.40)`);
  } finally {
    rival.kill('SIGKILL');
  }
}
