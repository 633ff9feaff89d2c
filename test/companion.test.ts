/**
 * The PyTorch companion (python/byol_torch) against byol itself, on Debian's python3-torch: the same function for
 * byol's own "SAME" ResNets and the ConvNet, the same step (loss, both networks, batch-norm statistics, optimizer
 * state), DDP over 2 processes (gloo on 127.0.0.1) equal to one process at the same global batch, and a run that goes
 * byol → companion (2 processes) → byol equal to one uninterrupted byol run. Fixtures are made at test time.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { Byol, type StepResult } from '../src/byol/learner.js';
import type { ByolOptions } from '../src/byol/options.js';
import { decodeSafetensors, encodeSafetensors, type NamedArray } from '../src/io/safetensors.js';
import { resnet } from '../src/nets/resnet.js';
import { loadNativeAddon, useBackend } from '../src/node.js';
import { exportWholeLearner, parseWholeInfo, wholeLearnerState, type WholeInfo } from '../src/run/whole.js';
import { Rng } from '../src/views/rng.js';
import { byolSync, dataset, skipNoData } from './cli-helpers.js';

const PYTHON = '/usr/bin/python3';
const pythonDir = fileURLToPath(new URL('../../python', import.meta.url));
const launcher = join(pythonDir, 'continue_byol.py');
const hasTorch = spawnSync(PYTHON, ['-c', 'import torch, torch.distributed'], { encoding: 'utf8' }).status === 0;
const skip = hasTorch ? false : 'needs python3-torch (apt-get install python3-torch)';
const dir = mkdtempSync(join(tmpdir(), 'byol-companion-'));
after(() => rmSync(dir, { recursive: true, force: true }));
before(async () => {
  // float32 throughout (tfjs's cpu backend would take minutes for a ResNet step's convolution gradients).
  await useBackend((process.env['BYOL_TEST_BACKEND'] as 'native' | 'wasm' | 'cpu' | undefined) ?? (loadNativeAddon() ? 'native' : 'wasm'));
});

const env = { ...process.env, PYTHONPATH: pythonDir, GLOO_SOCKET_IFNAME: 'lo', OMP_NUM_THREADS: '1' };

function python(args: string[], timeout = 240_000): string {
  const r = spawnSync(PYTHON, args, { encoding: 'utf8', timeout, env });
  assert.equal(r.status, 0, `${args.join(' ')}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** The companion under torch.distributed's launcher: `n` processes on this machine, gloo over loopback. */
export async function torchrun(n: number, args: string[]): Promise<string> {
  const logs = mkdtempSync(join(dir, 'logs-'));
  const port = await freePort();
  // --redirects/--tee: without them the launcher fails on Python 3.11 (pytorch#92319).
  return python(['-m', 'torch.distributed.run', '--nproc_per_node', String(n), '--nnodes', '1', '--master_addr', '127.0.0.1', '--master_port', String(port), '--redirects', '1', '--tee', '1', '--log_dir', logs, launcher, ...args]);
}

/** Reproducible pseudo-random values (byol's generator), in [−1, 1). */
function noise(n: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => rng.uniform(-1, 1));
}

type Shape = readonly [number, number, number];
/**
 * A batch of image-like views: per image a colour offset, a wave of its own frequency and amplitude, and noise — images
 * that differ as wholes, as photos do (white noise alone averages away in the encoder's pooling, leaving features so
 * alike that batch norm divides rounding errors).
 */
function imageBatch(batch: number, [h, w, c]: Shape, seed: number): Float32Array {
  const rng = new Rng(seed);
  const out = new Float32Array(batch * h * w * c);
  for (let i = 0; i < batch; i++) {
    const offset = Array.from({ length: c }, () => rng.uniform(-1, 1));
    const [fx, fy, amp] = [rng.uniform(0, 3), rng.uniform(0, 3), rng.uniform(0.2, 1.5)];
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let k = 0; k < c; k++) out[((i * h + y) * w + x) * c + k] = offset[k]! + amp * Math.sin(fx * x + fy * y + k) + 0.3 * rng.uniform(-1, 1);
  }
  return out;
}

/** View batches for steps [from, to): `views.K.1`, `views.K.2`, [batch, H, W, C]. */
function viewBatches(from: number, to: number, batch: number, shape: Shape): Map<string, NamedArray> {
  const out = new Map<string, NamedArray>();
  for (let k = from; k < to; k++) for (const v of [1, 2]) out.set(`views.${k}.${v}`, { shape: [batch, ...shape], data: imageBatch(batch, shape, 1000 * k + v) });
  return out;
}

async function stepOn(learner: Byol, views: Map<string, NamedArray>): Promise<StepResult> {
  const k = learner.stepCount;
  const [a, b] = [1, 2].map((v) => {
    const t = views.get(`views.${k}.${v}`)!;
    return tf.tensor4d(t.data, t.shape as [number, number, number, number]);
  });
  const r = await learner.step(a!, b!);
  tf.dispose([a!, b!]);
  return r;
}

async function writeWhole(learner: Byol, path: string): Promise<void> {
  const { tensors, info } = await exportWholeLearner(learner, { stepsPerEpoch: 10 });
  writeFileSync(path, encodeSafetensors(tensors, { format: 'pt', byol: JSON.stringify(info) }));
}

function readWhole(path: string): { tensors: Map<string, NamedArray>; info: WholeInfo } {
  const { tensors, metadata } = decodeSafetensors(readFileSync(path), path);
  return { tensors, info: parseWholeInfo(metadata, path) };
}

/**
 * The bias of a Linear layer that batch norm follows (the heads' first layer): batch norm subtracts the batch mean, so
 * its gradient is exactly 0 and what both frameworks compute for it is float noise (~1e-9, vs ~1e-3 for the weights).
 */
const CANCELLED = /\.(projector|predictor)\.0\.bias$/;

/** Per tensor of `want`: the largest error of `got`'s values relative to the tensor's largest value. */
function relativeErrors(got: ReadonlyMap<string, NamedArray>, want: ReadonlyMap<string, NamedArray>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [key, w] of want) {
    const g = got.get(key);
    assert.ok(g, `missing ${key}`);
    assert.deepEqual(g.shape, w.shape, key);
    let scale = 1e-30;
    for (const v of w.data) scale = Math.max(scale, Math.abs(v));
    let err = 0;
    for (let i = 0; i < w.data.length; i++) err = Math.max(err, Math.abs(g.data[i]! - w.data[i]!));
    out.set(key, err / scale);
  }
  return out;
}

/** The worst of {@link relativeErrors}, but for {@link CANCELLED} biases (float noise). */
function worstError(got: ReadonlyMap<string, NamedArray>, want: ReadonlyMap<string, NamedArray>): { key: string; err: number } {
  let worst = { key: '', err: 0 };
  for (const [key, err] of relativeErrors(got, want)) if (err > worst.err && !CANCELLED.test(key)) worst = { key, err };
  return worst;
}

const small = (encoder: ByolOptions['encoder'], batchSize: number, totalSteps: number): ByolOptions => ({
  encoder,
  batchSize,
  totalSteps,
  warmupSteps: 3,
  projector: { hiddenDim: 32, outputDim: 16 },
  predictor: { hiddenDim: 24 },
  seed: 3,
});

/** Gives every 1-D variable (batch-norm scales, offsets, statistics; biases) random values, so that nothing rests on
 * initial ones (a bottleneck's last batch-norm scale starts at 0, which would hide its whole branch). */
function scramble(learner: Byol, seed: number, statistics = true): void {
  const vars = [...learner.onlineWeights, ...learner.onlineState, ...learner.targetWeights, ...learner.targetState].filter((v) => v.rank === 1 && (statistics || !/moving_/.test(v.name)));
  tf.tidy(() =>
    vars.forEach((v, i) => {
      const r = noise(v.size, seed + i);
      const positive = /moving_variance|gamma/.test(v.name);
      v.assign(tf.tensor1d(positive ? r.map((x) => 0.5 + Math.abs(x)) : r));
    }),
  );
}

test('same function: byol\'s "SAME" ResNet-18 (even and odd sizes), ResNet-50, CIFAR ResNet-18, the ConvNet, and imported ResNets (PyTorch\'s padding, solo-learn\'s stem) give byol\'s features in PyTorch, both networks', { skip }, async () => {
  const cases: [string, ByolOptions['encoder'], Shape][] = [
    ['resnet18 40px', { name: 'resnet18', inputShape: [40, 40, 3] }, [40, 40, 3]],
    ['resnet18 33px', { name: 'resnet18', inputShape: [33, 33, 3] }, [33, 33, 3]],
    ['resnet50 64px', { name: 'resnet50', inputShape: [64, 64, 3] }, [64, 64, 3]],
    ['resnet18-cifar', { name: 'resnet18-cifar', inputShape: [16, 16, 3] }, [16, 16, 3]],
    ['convnet', { name: 'convnet', inputShape: [16, 16, 1] }, [16, 16, 1]],
    // Runs started from PyTorch weights: PyTorch's padding, and solo-learn's CIFAR stem padded by 2.
    ['resnet18 torch padding', resnet({ depth: 18, stem: 'imagenet', padding: 'torch', inputShape: [40, 40, 3], seed: 4 }), [40, 40, 3]],
    ['resnet18-cifar stem padding 2', resnet({ depth: 18, stem: 'cifar', padding: 'torch', stemPadding: 2, inputShape: [16, 16, 3], seed: 4 }), [16, 16, 3]],
  ];
  for (const [name, encoder, shape] of cases) {
    const learner = new Byol({ ...small(encoder, 4, 10), targetInit: 'independent' });
    try {
      scramble(learner, 7);
      const whole = join(dir, `f-${name.replace(/\W/g, '_')}.safetensors`);
      await writeWhole(learner, whole);
      const n = 3;
      const images = noise(n * shape[0] * shape[1] * shape[2], 11);
      const imagesFile = join(dir, 'images.safetensors');
      writeFileSync(imagesFile, encodeSafetensors(new Map([['images', { shape: [n, ...shape], data: images }]])));
      const out = join(dir, 'features.safetensors');
      python(['-m', 'byol_torch.check', 'features', whole, imagesFile, out]);
      const got = decodeSafetensors(readFileSync(out), out).tensors;
      const x = tf.tensor4d(images, [n, ...shape]);
      const online = learner.embed(x);
      const target = tf.tidy(() => (learner.targetEncoder as unknown as { predict(x: tf.Tensor): tf.Tensor }).predict(x));
      const want = new Map([['online', { shape: online.shape, data: online.dataSync() as Float32Array }], ['target', { shape: target.shape, data: target.dataSync() as Float32Array }]]);
      tf.dispose([x, online, target]);
      const { key, err } = worstError(got, want);
      assert.ok(err <= 1e-5, `${name}: ${key} features differ by ${err.toExponential(2)} of their scale`);
    } finally {
      learner.dispose();
    }
  }
});

test('same step: from one exported state and the same two view batches, PyTorch and byol give the same loss, weights, statistics and optimizer state (ConvNet, CIFAR ResNet-18; LARS, SGD, AdamW)', { skip }, async () => {
  const cases: [string, ByolOptions][] = [
    ['convnet lars', small({ name: 'convnet', inputShape: [16, 16, 1] }, 8, 20)],
    ['resnet18-cifar lars', small({ name: 'resnet18-cifar', inputShape: [16, 16, 3] }, 6, 20)],
    ['convnet sgd', { ...small({ name: 'convnet', inputShape: [16, 16, 1] }, 8, 20), optimizer: 'sgd', nesterov: true }],
    ['convnet adamw', { ...small({ name: 'convnet', inputShape: [16, 16, 1] }, 8, 20), optimizer: 'adamw' }],
    ['convnet simsiam no predictor', { ...small({ name: 'convnet', inputShape: [16, 16, 1] }, 8, 20), mode: 'simsiam' }],
    ['convnet negatives', { ...small({ name: 'convnet', inputShape: [16, 16, 1] }, 8, 20), beta: 0.5, predictor: false }],
  ];
  for (const [name, options] of cases) {
    const learner = new Byol(options);
    try {
      // Batch-norm scales and offsets other than 1 and 0 (as after training): at init a ResNet's features of different
      // images are so alike that float32 rounding decides its gradients (see below).
      scramble(learner, 5, false);
      const shape = learner.networks().online.encoder!.inputs[0]!.shape.slice(1) as unknown as Shape;
      const views = viewBatches(0, 4, options.batchSize, shape);
      // Two steps first: momentum slots and the learning rate are no longer zero.
      for (let i = 0; i < 3; i++) await stepOn(learner, views);
      const before = join(dir, 'before.safetensors');
      await writeWhole(learner, before);
      const viewsFile = join(dir, 'views.safetensors');
      writeFileSync(viewsFile, encodeSafetensors(views));
      const afterFile = join(dir, 'after.safetensors');
      const after64 = join(dir, 'after64.safetensors');
      const reported = JSON.parse(python(['-m', 'byol_torch.check', 'step', before, viewsFile, afterFile, after64]).trim().split('\n').pop()!) as { loss: number; loss64: number; tau: number; lr: number; step: number };
      const r = await stepOn(learner, views);
      assert.equal(reported.step, r.step, name);
      assert.ok(Math.abs(reported.loss - r.loss) <= 1e-5 * Math.max(1, Math.abs(r.loss)), `${name}: loss ${reported.loss} vs byol's ${r.loss}`);
      assert.ok(Math.abs(reported.loss64 - r.loss) <= 1e-5 * Math.max(1, Math.abs(r.loss)), `${name}: float64 loss ${reported.loss64} vs byol's ${r.loss}`);
      assert.equal(reported.tau, r.tau, `${name}: τ`);
      assert.ok(Math.abs(reported.lr - r.learningRate) <= 1e-15, `${name}: lr ${reported.lr} vs ${r.learningRate}`);
      const torch32 = readWhole(afterFile);
      const torch64 = readWhole(after64).tensors;
      const mine = await exportWholeLearner(learner);
      assert.equal(torch32.info.step, mine.info.step);
      assert.equal(torch32.info.optimizer.updates, mine.info.optimizer.updates);
      assert.deepEqual([...torch32.tensors.keys()].sort(), [...mine.tensors.keys()].sort(), `${name}: the same tensors`);
      // Every tensor within 1e-5 of its scale of PyTorch's float32 step — but a ResNet's optimizer slots, which hold raw
      // gradients, where float32 itself is not that exact: measured here against PyTorch's float64 step, PyTorch's own
      // float32 gradients were off by 5e-5 to 4e-2 by draw (batch norm's backward over a few similar images cancels
      // most of each gradient), and a ReLU input within float32's error of 0 flips one channel's mask — it did in 1 of 4
      // draws, 16 % on one channel of 512. Those are held to the float64 step element by element: 99.5 % within 1e-4.
      // Biases that batch norm cancels (CANCELLED) hold float noise on both sides; AdamW turns that noise into ±lr steps.
      const ours = relativeErrors(mine.tensors, torch32.tensors);
      const resnet = name.startsWith('resnet');
      for (const [key, err] of ours) {
        if (CANCELLED.test(key) || (resnet && key.startsWith('optimizer.'))) continue;
        assert.ok(err <= 1e-5, `${name}: ${key} differs from PyTorch's by ${err.toExponential(2)} of its scale`);
      }
      if (resnet) {
        const share = (m: ReadonlyMap<string, NamedArray>) => {
          let [close, all] = [0, 0];
          for (const [key, w] of torch64) {
            if (!key.startsWith('optimizer.') || CANCELLED.test(key)) continue;
            const g = m.get(key)!;
            const scale = w.data.reduce((a, v) => Math.max(a, Math.abs(v)), 1e-30);
            for (let i = 0; i < w.data.length; i++) if (Math.abs(g.data[i]! - w.data[i]!) <= 1e-4 * scale) close++;
            all += w.data.length;
          }
          return close / all;
        };
        const [mineShare, theirShare] = [share(mine.tensors), share(torch32.tensors)];
        if (process.env['BYOL_TEST_VERBOSE']) console.log(name, 'optimizer slots within 1e-4 of the float64 step: byol', mineShare, 'PyTorch float32', theirShare);
        assert.ok(mineShare >= 0.995, `${name}: only ${(100 * mineShare).toFixed(2)} % of the optimizer slots' values are within 1e-4 of the float64 step (PyTorch float32: ${(100 * theirShare).toFixed(2)} %)`);
      }
      if (options.optimizer !== 'adamw') {
        for (const [key, w] of torch32.tensors) {
          if (!CANCELLED.test(key)) continue;
          const g = mine.tensors.get(key)!;
          const abs = w.data.reduce((m, v, i) => Math.max(m, Math.abs(v - g.data[i]!)), 0);
          assert.ok(abs <= 1e-6, `${name}: ${key} differs by ${abs.toExponential(2)} (noise of a cancelled gradient is ~1e-7)`);
        }
      }
    } finally {
      learner.dispose();
    }
  }
});

interface MetricsLine {
  step: number;
  loss: number;
  tau: number;
  lr: number;
}
const metricsOf = (runDir: string): MetricsLine[] =>
  readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as MetricsLine);

test('DDP is the same learner: torchrun --nproc_per_node 2 (gloo, 127.0.0.1, batch norm across both) at global batch 8 gives the losses and final state of one process at batch 8, 5 steps; checkpoints resume exactly; accumulation runs', { skip }, async () => {
  const options = small({ name: 'convnet', inputShape: [16, 16, 1] }, 8, 30);
  const learner = new Byol(options);
  try {
    const views = viewBatches(0, 8, 8, [16, 16, 1]);
    for (let i = 0; i < 2; i++) await stepOn(learner, views);
    const whole = join(dir, 'ddp-start.safetensors');
    await writeWhole(learner, whole);
    const viewsFile = join(dir, 'ddp-views.safetensors');
    writeFileSync(viewsFile, encodeSafetensors(views));
    const one = join(dir, 'ddp-one');
    const two = join(dir, 'ddp-two');
    python([launcher, whole, '--views', viewsFile, '--out', one, '--steps', '5']);
    await torchrun(2, [whole, '--views', viewsFile, '--out', two, '--steps', '5']);
    const [a, b] = [metricsOf(one), metricsOf(two)];
    assert.deepEqual(a.map((m) => m.step), [3, 4, 5, 6, 7]);
    assert.deepEqual(b.map((m) => m.step), [3, 4, 5, 6, 7]);
    a.forEach((m, i) => assert.ok(Math.abs(m.loss - b[i]!.loss) <= 1e-5, `step ${m.step}: loss ${m.loss} (1 process) vs ${b[i]!.loss} (2)`));
    const { key, err } = worstError(readWhole(join(two, 'whole.safetensors')).tensors, readWhole(join(one, 'whole.safetensors')).tensors);
    assert.ok(err <= 1e-5, `${key} differs by ${err.toExponential(2)} between 1 and 2 processes`);
    // Checkpoints and resume: 3 steps (a checkpoint at step 4), then --resume to step 7 gives the 5-step run's losses;
    // the resumed run's metrics keep one line per step.
    const cut = join(dir, 'ddp-cut');
    python([launcher, whole, '--views', viewsFile, '--out', cut, '--steps', '3', '--checkpoint-every', '2']);
    assert.deepEqual(readdirSync(join(cut, 'checkpoints')).sort(), ['step-00000004.safetensors', 'step-00000005.safetensors']);
    python([launcher, '--resume', '--views', viewsFile, '--out', cut, '--steps', '2']);
    const c = metricsOf(cut);
    assert.deepEqual(c.map((m) => m.step), [3, 4, 5, 6, 7]);
    c.forEach((m, i) => assert.ok(Math.abs(m.loss - a[i]!.loss) <= 1e-6 * a[i]!.loss, `step ${m.step}: resumed loss ${m.loss} vs ${a[i]!.loss}`));
    // Gradient accumulation: 2 micro-batches of 4 a step; batch norm then sees 4 images, not 8 (so the losses differ).
    const acc = join(dir, 'ddp-acc');
    python([launcher, whole, '--views', viewsFile, '--out', acc, '--steps', '2', '--accumulate', '2']);
    const m = metricsOf(acc);
    assert.deepEqual(m.map((x) => x.step), [3, 4]);
    assert.ok(m.every((x) => Number.isFinite(x.loss)) && m[0]!.loss !== a[0]!.loss, `accumulated losses ${m.map((x) => x.loss)}`);
  } finally {
    learner.dispose();
  }
});

test('round trip: byol 10 steps → companion 10 steps (2 processes) → byol 10 steps equals one uninterrupted byol run of 30 steps; τ and lr at every step are the closed forms', { skip }, async () => {
  const options = small({ name: 'convnet', inputShape: [16, 16, 1] }, 8, 30);
  const views = viewBatches(0, 30, 8, [16, 16, 1]);
  const straight = new Byol(options);
  const home = new Byol(options);
  const back = new Byol(options);
  try {
    const reference: StepResult[] = [];
    for (let k = 0; k < 30; k++) reference.push(await stepOn(straight, views));
    const first: StepResult[] = [];
    for (let k = 0; k < 10; k++) first.push(await stepOn(home, views));
    const whole = join(dir, 'trip-10.safetensors');
    await writeWhole(home, whole);
    const viewsFile = join(dir, 'trip-views.safetensors');
    writeFileSync(viewsFile, encodeSafetensors(views));
    const cluster = join(dir, 'trip-cluster');
    await torchrun(2, [whole, '--views', viewsFile, '--out', cluster, '--steps', '10']);
    const middle = metricsOf(cluster);
    const returned = readWhole(join(cluster, 'whole.safetensors'));
    assert.equal(returned.info.step, 20);
    back.setState(wholeLearnerState(back, returned.tensors, returned.info, 'whole.safetensors'));
    assert.equal(back.stepCount, 20);
    const last: StepResult[] = [];
    for (let k = 20; k < 30; k++) last.push(await stepOn(back, views));
    const trip = [...first.map((r) => ({ step: r.step, loss: r.loss, tau: r.tau, lr: r.learningRate })), ...middle, ...last.map((r) => ({ step: r.step, loss: r.loss, tau: r.tau, lr: r.learningRate }))];
    assert.deepEqual(trip.map((r) => r.step), reference.map((r) => r.step));
    trip.forEach((r, k) => {
      // Step k+1 ran with the schedules' values for step k (0-based), on every side.
      assert.ok(Math.abs(r.tau - straight.tauAt(k)) <= 1e-15, `step ${r.step}: τ ${r.tau} vs ${straight.tauAt(k)}`);
      assert.ok(Math.abs(r.lr - straight.learningRateAt(k)) <= 1e-15, `step ${r.step}: lr ${r.lr} vs ${straight.learningRateAt(k)}`);
      assert.ok(Math.abs(r.loss - reference[k]!.loss) <= 1e-5 * Math.abs(reference[k]!.loss), `step ${r.step}: loss ${r.loss} vs ${reference[k]!.loss} uninterrupted`);
    });
    const end = worstError((await exportWholeLearner(back)).tensors, (await exportWholeLearner(straight)).tensors);
    if (process.env['BYOL_TEST_VERBOSE']) console.log('round trip: worst difference at step 30', end, 'losses', trip.map((r, k) => Math.abs(r.loss - reference[k]!.loss)));
    assert.ok(end.err <= 1e-4, `after 30 steps ${end.key} differs by ${end.err.toExponential(2)} of its scale from the uninterrupted run`);
  } finally {
    straight.dispose();
    home.dispose();
    back.dispose();
  }
});

test('the recipe through the CLI: pretrain → export --whole → views → companion (views from byol, or drawn from the dataset in 2 processes) → pretrain --from goes on as the uninterrupted run did', { skip: skip || skipNoData }, async () => {
  // Tuned convolution paths pinned: two byol processes then compute bit-identical steps on the native backend.
  const pinned = { ...process.env, BYOL_NATIVE_CONV_GEMM: '0', BYOL_NATIVE_CONV_MIRROR: '0' };
  const cli = (args: string[]) => {
    const r = spawnSync(process.execPath, [fileURLToPath(new URL('../src/cli/main.js', import.meta.url)), ...args], { encoding: 'utf8', timeout: 240_000, env: pinned });
    assert.equal(r.status, 0, `byol ${args.join(' ')}:\n${r.stdout}\n${r.stderr}`);
    return r.stdout;
  };
  const recipe = ['--encoder', 'convnet', '--limit', '64', '--epochs', '3', '--batch', '16', '--projector-hidden', '32', '--projector-out', '16', '--predictor-hidden', '32', '--knn-every', '0', '--knn-bank', '64', '--knn-test', '32', '--diagnose-every', '0'];
  const straight = join(dir, 'cli-straight');
  cli(['pretrain', dataset, '--out', straight, ...recipe, '--checkpoint-every', '4', '--keep', '3']);
  const whole = join(dir, 'cli-whole.safetensors');
  const exported = cli(['export', join(straight, 'checkpoints', 'step-00000004.byol'), '--format', 'safetensors', '--whole', '--out', whole]);
  assert.match(exported, /exported the whole learner of \S+step-00000004\.byol \(step 4 of 12, \d+ tensors: online and target networks, optimizer state\)/);
  const viewsFile = join(dir, 'cli-views.safetensors');
  assert.match(cli(['views', whole, '--steps', '4', '--out', viewsFile]), /wrote the views of steps 5–8 \(4 × 2 × 16 images/);
  // The companion draws the same views itself from the dataset (byol's order, generator and operations).
  const drawn = JSON.parse(python(['-m', 'byol_torch.check', 'views', whole, viewsFile, dataset]).trim()) as { steps: number[]; values: number; worst: number };
  assert.deepEqual(drawn.steps, [4, 5, 6, 7]);
  assert.ok(drawn.worst <= 1e-5, `the companion's views differ from byol's by ${drawn.worst}`);
  const cluster = join(dir, 'cli-cluster');
  python([launcher, whole, '--views', viewsFile, '--out', cluster, '--steps', '4']);
  // …and so does a 2-process run that reads the dataset: byol's losses of those steps.
  const fromData = join(dir, 'cli-data');
  await torchrun(2, [whole, '--data', dataset, '--out', fromData, '--steps', '4']);
  const back = join(dir, 'cli-back');
  const continued = cli(['pretrain', '--from', join(cluster, 'whole.safetensors'), '--out', back]);
  assert.match(continued, /continuing at step 8\/12 \(epoch 3\)/);
  const steps = (runDir: string) => readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as MetricsLine & { type: string }).filter((r) => r.type === 'step');
  const [a, b] = [steps(straight), steps(back)];
  assert.deepEqual(b.map((r) => r.step), [5, 6, 7, 8, 9, 10, 11, 12], "the companion's steps (its metrics.jsonl), then byol's");
  for (const r of [...b, ...steps(fromData)]) {
    const want = a.find((x) => x.step === r.step)!;
    assert.ok(Math.abs(r.loss - want.loss) <= 1e-4 * want.loss, `step ${r.step}: loss ${r.loss} vs ${want.loss} uninterrupted`);
    assert.ok(Math.abs(r.tau - want.tau) <= 1e-12 && Math.abs(r.lr - want.lr) <= 1e-12, `step ${r.step}: τ ${r.tau}, lr ${r.lr} vs ${want.tau}, ${want.lr}`);
  }
  const record = JSON.parse(readFileSync(join(back, 'config.json'), 'utf8')) as { continuedFrom: { step: number; history: { by: string; from: number; to: number }[] } };
  assert.equal(record.continuedFrom.step, 8);
  assert.deepEqual(record.continuedFrom.history.map((h) => [h.by, h.from, h.to]), [['byol_torch', 4, 8]]);
  // Refusals: a flag that would change the exported run, and a folder of someone else's.
  const bad = byolSync(['pretrain', '--from', join(cluster, 'whole.safetensors'), '--out', join(dir, 'cli-bad'), '--epochs', '9']);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--from continues the exported run with its own config; drop --epochs/);
  const mine = join(dir, 'cli-cluster-again');
  python([launcher, whole, '--views', viewsFile, '--out', mine, '--steps', '1']);
  const again = spawnSync(PYTHON, [launcher, whole, '--views', viewsFile, '--out', mine, '--steps', '1'], { encoding: 'utf8', env });
  assert.equal(again.status, 2);
  assert.match(again.stderr, /holds a continued run already; continue it with --resume/);
  const foreign = spawnSync(PYTHON, [launcher, whole, '--views', viewsFile, '--out', straight, '--steps', '1'], { encoding: 'utf8', env });
  assert.equal(foreign.status, 2);
  assert.match(foreign.stderr, /holds files this companion did not write/);
});

const CIFAR = fileURLToPath(new URL('../../../shared/datasets/cifar10', import.meta.url));
test('CIFAR-10 (shared copy): the companion draws byol\'s colour views itself, and continues a run with byol\'s losses', { skip: skip || (!existsSync(join(CIFAR, 'data_batch_1.bin')) && 'no ../shared/datasets/cifar10') }, () => {
  const pinned = { ...process.env, BYOL_NATIVE_CONV_GEMM: '0', BYOL_NATIVE_CONV_MIRROR: '0' };
  const cli = (args: string[]) => {
    const r = spawnSync(process.execPath, [fileURLToPath(new URL('../src/cli/main.js', import.meta.url)), ...args], { encoding: 'utf8', timeout: 240_000, env: pinned });
    assert.equal(r.status, 0, `byol ${args.join(' ')}:\n${r.stdout}\n${r.stderr}`);
    return r.stdout;
  };
  const spec = `cifar10:${CIFAR}`;
  const run = join(dir, 'cifar-run');
  cli(['pretrain', spec, '--out', run, '--encoder', 'convnet', '--limit', '256', '--epochs', '2', '--batch', '32', '--projector-hidden', '64', '--projector-out', '32', '--predictor-hidden', '64', '--knn-every', '0', '--knn-bank', '64', '--knn-test', '32', '--checkpoint-every', '8', '--diagnose-every', '0']);
  const whole = join(dir, 'cifar-whole.safetensors');
  cli(['export', join(run, 'checkpoints', 'step-00000008.byol'), '--format', 'safetensors', '--whole', '--out', whole]);
  const viewsFile = join(dir, 'cifar-views.safetensors');
  cli(['views', whole, '--steps', '8', '--out', viewsFile]);
  const drawn = JSON.parse(python(['-m', 'byol_torch.check', 'views', whole, viewsFile, spec]).trim()) as { steps: number[]; values: number; worst: number };
  assert.equal(drawn.steps.length, 8);
  assert.ok(drawn.worst <= 1e-5, `the companion's CIFAR views (crop, flip, colour jitter, grayscale, blur, solarize) differ from byol's by ${drawn.worst}`);
  const cont = join(dir, 'cifar-cont');
  python([launcher, whole, '--data', spec, '--out', cont, '--steps', '8']);
  const want = readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as MetricsLine & { type: string }).filter((r) => r.type === 'step' && r.step > 8);
  const got = metricsOf(cont);
  assert.deepEqual(got.map((r) => r.step), want.map((r) => r.step));
  got.forEach((r, i) => assert.ok(Math.abs(r.loss - want[i]!.loss) <= 1e-5 * want[i]!.loss, `step ${r.step}: loss ${r.loss} vs byol's ${want[i]!.loss}`));
});
