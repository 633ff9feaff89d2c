/**
 * The fused kernels' contract (src/kernels.ts): the reference implementations against closed forms and autodiff,
 * every backend that registers the kernels against the references, and the module boundary — backend code reaches
 * the learner only through the contract, and the core never reaches into backend code.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import {
  FUSED_ADD_RELU_KERNEL,
  FUSED_BN_GRAD_KERNEL,
  FUSED_BN_RELU_TRAIN_KERNEL,
  FUSED_BN_TRAIN_KERNEL,
  FUSED_EMA_ALL_KERNEL,
  FUSED_EMA_KERNEL,
  FUSED_KERNELS,
  FUSED_LARS_KERNEL,
  RELU_GRAD_KERNEL,
  addReluReference,
  batchNormGradReference,
  batchNormReluTrainReference,
  batchNormTrainReference,
  emaReference,
  larsUpdateReference,
  reluGradReference,
} from '../src/kernels.js';
import { loadNativeAddon, nativeLoadError, useBackend } from '../src/node.js';

const close = (got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string) => {
  assert.equal(got.length, want.length, what);
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < want.length; i++) {
    scale = Math.max(scale, Math.abs(want[i]!));
    diff = Math.max(diff, Math.abs(got[i]! - want[i]!));
  }
  assert.ok(diff <= tol * Math.max(scale, 1e-12), `${what}: differs by ${diff} (scale ${scale})`);
};

test('LARS reference: the official update by hand (decay, trust ratio, momentum), excluded parameters, zero norms', async () => {
  await useBackend('cpu');
  const a = { lr: 2, weightDecay: 0.1, momentum: 0.9, eta: 0.001, adapt: true };
  const [p, g, mu] = [tf.tensor1d([3, 4]), tf.tensor1d([1, 0]), tf.tensor1d([0.5, 0.5])];
  // u = g + 0.1·p = [1.3, 0.4]; trust = η‖p‖/‖u‖ = 0.005/√1.85; μ' = 0.9·μ + trust·u; p' = p − 2·μ'.
  const trust = 0.005 / Math.sqrt(1.85);
  const muWant = [0.45 + trust * 1.3, 0.45 + trust * 0.4];
  const [p1, mu1] = larsUpdateReference(p, g, mu, a);
  close(mu1.dataSync(), muWant, 1e-6, 'mu');
  close(p1.dataSync(), [3 - 2 * muWant[0]!, 4 - 2 * muWant[1]!], 1e-6, 'p');
  // Excluded (biases, batch norm): u = g, no decay, no trust.
  const [p2, mu2] = larsUpdateReference(p, g, mu, { ...a, adapt: false });
  close(mu2.dataSync(), [1.45, 0.45], 1e-6, 'mu excluded');
  close(p2.dataSync(), [3 - 2.9, 4 - 0.9], 1e-6, 'p excluded');
  // A zero weight (fresh bias-like tensor) has trust 1.
  const zero = tf.zeros([2]);
  const [, mu3] = larsUpdateReference(zero, g, tf.zeros([2]), a);
  close(mu3.dataSync(), [1, 0], 1e-6, 'zero norm: trust 1');
  tf.dispose([p, g, mu, p1, mu1, p2, mu2, zero, mu3]);
});

test('EMA and batch-norm references: closed forms, and the batch-norm gradient equals autodiff through the batch statistics', async () => {
  await useBackend('cpu');
  const before = tf.memory().numTensors;
  const inputs = [tf.tensor1d([1, 2]), tf.tensor1d([3, -2]), tf.tensor1d([2, 1]), tf.tensor1d([0.5, -1])] as const;
  const e = emaReference(inputs[0], inputs[1], 0.75);
  close(e.dataSync(), [1.5, 1], 1e-7, 'ema');
  // Batch norm over [2, 1, 1, 2]: channel 0 has 1 and 3 (mean 2, var 1), channel 1 has 0 and 0.
  const x = tf.tensor4d([1, 0, 3, 0], [2, 1, 1, 2]);
  const [y, mean, variance] = batchNormTrainReference(x, inputs[2], inputs[3], 1e-3);
  close(mean.dataSync(), [2, 0], 1e-7, 'mean');
  close(variance.dataSync(), [1, 0], 1e-7, 'biased variance');
  const s = 1 / Math.sqrt(1.001);
  close(y.dataSync(), [0.5 - 2 * s, -1, 0.5 + 2 * s, -1], 1e-6, 'y');
  tf.dispose([...inputs, e, x, y, mean, variance]);
  assert.equal(tf.memory().numTensors, before, 'the references leak nothing');
  // The closed-form gradient against tfjs's autodiff of the training pass (moments included).
  const xr = tf.randomNormal([3, 4, 5, 6], 0.5, 2, 'float32', 3);
  const dy = tf.randomNormal([3, 4, 5, 6], 0, 1, 'float32', 4);
  const scale = tf.randomUniform([6], 0.5, 1.5, 'float32', 5);
  const offset = tf.randomUniform([6], -1, 1, 'float32', 6);
  const grads = tf.grads((xx: tf.Tensor, sc: tf.Tensor, of: tf.Tensor) => tf.sum(tf.mul(batchNormTrainReference(xx, sc, of, 1e-5)[0], dy)));
  const [gx, gScale, gOffset] = grads([xr, scale, offset]);
  const [, m, v] = batchNormTrainReference(xr, scale, offset, 1e-5);
  const [dx, dScale, dOffset] = batchNormGradReference(xr, dy, m, v, scale, 1e-5);
  close(dx.dataSync(), gx!.dataSync(), 1e-4, 'dx');
  close(dScale.dataSync(), gScale!.dataSync(), 1e-4, 'dscale');
  close(dOffset.dataSync(), gOffset!.dataSync(), 1e-5, 'doffset');
  // With ReLU: the gradient given y equals autodiff through relu(batch norm).
  const reluGrads = tf.grads((xx: tf.Tensor, sc: tf.Tensor, of: tf.Tensor) => tf.sum(tf.mul(batchNormReluTrainReference(xx, sc, of, 1e-5)[0], dy)));
  const [rx, rScale, rOffset] = reluGrads([xr, scale, offset]);
  const [yr] = batchNormReluTrainReference(xr, scale, offset, 1e-5);
  assert.ok(tf.min(yr).arraySync() === 0 && (tf.sum(tf.greater(yr, 0)).arraySync() as number) > 100, 'relu: some values rectified, many kept');
  const [dxr, dScaleR, dOffsetR] = batchNormGradReference(xr, dy, m, v, scale, 1e-5, yr);
  close(dxr.dataSync(), rx!.dataSync(), 1e-4, 'relu dx');
  close(dScaleR.dataSync(), rScale!.dataSync(), 1e-4, 'relu dscale');
  close(dOffsetR.dataSync(), rOffset!.dataSync(), 1e-5, 'relu doffset');
  tf.dispose([xr, dy, scale, offset, gx!, gScale!, gOffset!, m, v, dx, dScale, dOffset, rx!, rScale!, rOffset!, yr, dxr, dScaleR, dOffsetR]);
});

const addon = loadNativeAddon();
test('the native backend registers every kernel of the contract and each matches its reference', { skip: addon ? false : `native addon not built (${nativeLoadError()})` }, async () => {
  await useBackend('cpu');
  const rand = (shape: number[], seed: number, lo = -1, hi = 1) => tf.randomUniform(shape, lo, hi, 'float32', seed);
  // Inputs made on cpu, read back as arrays, so that both backends get the same numbers.
  const arrays = (ts: tf.Tensor[]) => ts.map((t) => ({ data: t.dataSync().slice(), shape: t.shape }));
  const lars = arrays([rand([64, 33], 1), rand([64, 33], 2, -0.1, 0.1), rand([64, 33], 3, -0.01, 0.01)]);
  const bnX = arrays([rand([4, 5, 5, 16], 4, -2, 3), rand([16], 5, 0.5, 1.5), rand([16], 6), rand([4, 5, 5, 16], 7)]);
  const ema = arrays([rand([300], 8), rand([300], 9), rand([7, 3], 10), rand([7, 3], 11)]);
  // Residual sums: half the sums negative, so that ReLU's mask and gradient have something to cut.
  const sums = arrays([rand([4, 5, 5, 16], 12), rand([4, 5, 5, 16], 13), rand([4, 5, 5, 16], 14)]);
  const run = async (backend: 'cpu' | 'native') => {
    await useBackend(backend);
    const t = (a: { data: Float32Array | Int32Array | Uint8Array; shape: number[] }) => tf.tensor(a.data as Float32Array, a.shape, 'float32');
    const out: Record<string, Float32Array[]> = {};
    const read = (ts: tf.Tensor[]) => ts.map((x) => x.dataSync() as Float32Array);
    const [p, g, mu] = lars.map(t) as [tf.Tensor, tf.Tensor, tf.Tensor];
    const [x, scale, offset, dy] = bnX.map(t) as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
    const [t0, o0, t1, o1] = ema.map(t) as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
    for (const adapt of [true, false]) {
      const attrs = { lr: 0.3, weightDecay: 1.5e-6, momentum: 0.9, eta: 1e-3, adapt };
      out[`${FUSED_LARS_KERNEL} adapt=${adapt}`] = read(
        backend === 'native' ? (tf.engine().runKernel(FUSED_LARS_KERNEL, { p, g, mu }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[]) : larsUpdateReference(p, g, mu, attrs),
      );
    }
    const [y, m, v] = backend === 'native' ? (tf.engine().runKernel(FUSED_BN_TRAIN_KERNEL, { x, scale, offset }, { varianceEpsilon: 1e-5 }) as tf.Tensor[]) : batchNormTrainReference(x, scale, offset, 1e-5);
    out[FUSED_BN_TRAIN_KERNEL] = read([y!, m!, v!]);
    out[FUSED_BN_GRAD_KERNEL] = read(
      backend === 'native'
        ? (tf.engine().runKernel(FUSED_BN_GRAD_KERNEL, { x, dy, mean: m!, variance: v!, scale }, { varianceEpsilon: 1e-5 }) as tf.Tensor[])
        : batchNormGradReference(x, dy, m!, v!, scale, 1e-5),
    );
    const [yr, mr, vr] = backend === 'native' ? (tf.engine().runKernel(FUSED_BN_RELU_TRAIN_KERNEL, { x, scale, offset }, { varianceEpsilon: 1e-5 }) as tf.Tensor[]) : batchNormReluTrainReference(x, scale, offset, 1e-5);
    out[FUSED_BN_RELU_TRAIN_KERNEL] = read([yr!, mr!, vr!]);
    out[`${FUSED_BN_GRAD_KERNEL} with y`] = read(
      backend === 'native'
        ? (tf.engine().runKernel(FUSED_BN_GRAD_KERNEL, { x, dy, mean: mr!, variance: vr!, scale, y: yr! }, { varianceEpsilon: 1e-5 }) as tf.Tensor[])
        : batchNormGradReference(x, dy, mr!, vr!, scale, 1e-5, yr!),
    );
    const [sa, sb, sdy] = sums.map(t) as [tf.Tensor, tf.Tensor, tf.Tensor];
    const sum = backend === 'native' ? (tf.engine().runKernel(FUSED_ADD_RELU_KERNEL, { a: sa, b: sb }) as tf.Tensor) : addReluReference(sa, sb);
    out[FUSED_ADD_RELU_KERNEL] = read([sum]);
    out[RELU_GRAD_KERNEL] = read([backend === 'native' ? (tf.engine().runKernel(RELU_GRAD_KERNEL, { a: sdy, b: sum }) as tf.Tensor) : reluGradReference(sdy, sum)]);
    out[FUSED_EMA_KERNEL] = read([backend === 'native' ? (tf.engine().runKernel(FUSED_EMA_KERNEL, { target: t0, online: o0 }, { tau: 0.996 }) as tf.Tensor) : emaReference(t0, o0, 0.996)]);
    out[FUSED_EMA_ALL_KERNEL] = read(
      backend === 'native'
        ? (tf.engine().runKernel(FUSED_EMA_ALL_KERNEL, { target0: t0, online0: o0, target1: t1, online1: o1 }, { tau: 0.9 }) as tf.Tensor[])
        : [emaReference(t0, o0, 0.9), emaReference(t1, o1, 0.9)],
    );
    return out;
  };
  const want = await run('cpu');
  await useBackend('native');
  for (const name of FUSED_KERNELS) assert.ok(tf.getKernel(name, 'native'), `native registers ${name}`);
  const got = await run('native');
  assert.deepEqual(Object.keys(got).sort(), Object.keys(want).sort());
  for (const [name, outs] of Object.entries(want)) {
    outs.forEach((w, i) => close(got[name]![i]!, w, 1e-5, `${name} output ${i}`));
  }
  // Edge values, exactly as the references (tfjs's ReLU and Step): NaN stays NaN, −0 and 0 are not positive, ±∞.
  const edge = [NaN, -0, 0, 1, -1, Infinity, -Infinity, 2.5];
  const other = [1, 0, -0, -1, 1, -Infinity, Infinity, -3];
  const exact = async (backend: 'cpu' | 'native') => {
    await useBackend(backend);
    const [ea, eb] = [tf.tensor(edge), tf.tensor(other)];
    const y = backend === 'native' ? (tf.engine().runKernel(FUSED_ADD_RELU_KERNEL, { a: ea, b: eb }) as tf.Tensor) : addReluReference(ea, eb);
    const g = backend === 'native' ? (tf.engine().runKernel(RELU_GRAD_KERNEL, { a: eb, b: ea }) as tf.Tensor) : reluGradReference(eb, ea);
    const out = [Array.from(y.dataSync()), Array.from(g.dataSync())];
    tf.dispose([ea, eb, y, g]);
    return out;
  };
  const [wantEdge, gotEdge] = [await exact('cpu'), await exact('native')];
  gotEdge.forEach((v, i) => v.forEach((x, j) => assert.ok(Object.is(x, wantEdge[i]![j]), `edge ${i}/${j}: ${x} vs ${wantEdge[i]![j]}`)));
  await useBackend('cpu');
});

test('module boundary: backend code imports the learner only through src/kernels.ts; the core imports no backend code', () => {
  const src = fileURLToPath(new URL('../../src/', import.meta.url));
  const importsOf = (file: string) => [...readFileSync(file, 'utf8').matchAll(/^(?:import|export)[^;]*?from\s+'([^']+)'/gms)].map((m) => m[1]!);
  const ts = (dir: string) => readdirSync(join(src, dir)).filter((f) => f.endsWith('.ts')).map((f) => join(src, dir, f));
  for (const file of ts('native')) {
    for (const spec of importsOf(file)) {
      assert.doesNotMatch(spec, /^\.\.\/(byol|nets|train|views|eval|run|cli)\//, `${file} imports ${spec}: go through ../kernels.js`);
    }
  }
  const core = ['byol', 'nets', 'train', 'views', 'eval'].flatMap(ts).concat([join(src, 'kernels.ts'), join(src, 'index.ts'), join(src, 'backend.ts')]);
  for (const file of core) {
    for (const spec of importsOf(file)) assert.doesNotMatch(spec, /native|^node:|^sharp$/, `${file} (browser-safe core) imports ${spec}`);
  }
});
