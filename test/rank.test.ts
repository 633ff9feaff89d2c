/** Collapse diagnostics against closed forms: effective rank (RankMe), singular values, normalized spread. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { effectiveRank, normalizedStd, singularValues } from '../src/eval/rank.js';

/** Rows of an orthonormal m×m basis (a Householder reflection). */
function basis(m: number, shift: number): Float64Array[] {
  const h = Array.from({ length: m }, (_, j) => Math.cos(j * 1.3 + shift) + 0.2);
  const hn = h.reduce((s, x) => s + x * x, 0);
  return Array.from({ length: m }, (_, r) => Float64Array.from({ length: m }, (_, c) => (r === c ? 1 : 0) - (2 * h[r]! * h[c]!) / hn));
}

/** U·diag(s)·Vᵀ for n×dim with the given singular values. */
function withSingularValues(n: number, dim: number, s: number[]): Float32Array {
  const u = basis(n, 0.4);
  const v = basis(dim, 1.7);
  const out = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) out[i * dim + j] = s.reduce((acc, sk, k) => acc + u[k]![i]! * sk * v[k]![j]!, 0);
  return out;
}

test('singular values of U·diag(s)·Vᵀ are s, by either Gram matrix (wide and tall)', () => {
  const s = [5, 3, 2, 0.5];
  for (const [n, dim] of [[6, 10], [12, 5]] as const) {
    const got = singularValues(withSingularValues(n, dim, s), n, dim);
    const want = [...s, ...new Array(Math.min(n, dim) - s.length).fill(0)];
    assert.equal(got.length, Math.min(n, dim));
    want.forEach((w, i) => assert.ok(Math.abs(got[i]! - w) < 1e-5 * 5, `${n}×${dim}: σ${i} ${got[i]} vs ${w}`));
  }
});

test('effective rank: identity-like → its size, rank 1 → 1, two values 3 and 1 → exp(H(3/4, 1/4))', () => {
  const eye = new Float32Array(16 * 16);
  for (let i = 0; i < 16; i++) eye[i * 16 + i] = 2;
  assert.ok(Math.abs(effectiveRank(eye, 16, 16) - 16) < 1e-3);
  const rank1 = new Float32Array(20 * 8);
  for (let i = 0; i < 20; i++) for (let j = 0; j < 8; j++) rank1[i * 8 + j] = (i - 9.5) * (j + 1);
  assert.ok(Math.abs(effectiveRank(rank1, 20, 8) - 1) < 1e-3, `rank-1: ${effectiveRank(rank1, 20, 8)}`);
  const two = withSingularValues(7, 9, [3, 1]);
  const h = -(0.75 * Math.log(0.75) + 0.25 * Math.log(0.25));
  assert.ok(Math.abs(effectiveRank(two, 7, 9) - Math.exp(h)) < 1e-3, `${effectiveRank(two, 7, 9)} vs ${Math.exp(h)}`);
  assert.equal(effectiveRank(new Float32Array(12), 3, 4), 0, 'all zero: no rank');
});

test('normalized spread: identical rows → 0; one-hot rows of two kinds → 1/2 per dimension', () => {
  assert.equal(normalizedStd(Float32Array.from([1, 2, 1, 2, 1, 2]), 3, 2), 0);
  assert.ok(Math.abs(normalizedStd(Float32Array.from([3, 0, 0, 5, 2, 0, 0, 1]), 4, 2) - 0.5) < 1e-12);
  assert.throws(() => normalizedStd(new Float32Array(2), 1, 2), /rows/);
});

test('collapse sign: rank near 1 or no spread is named, healthy diagnostics are not; diagnose reads a learner\'s features', async () => {
  const { collapseSign, diagnose } = await import('../src/run/pretrain.js');
  assert.equal(collapseSign({ featureStd: 0.06, featureRank: 40, featureDim: 128, batch: 64 }), null);
  assert.match(collapseSign({ featureStd: 0.06, featureRank: 1.2, featureDim: 128, batch: 64 }) ?? '', /effective rank 1\.20 of 64 possible/);
  assert.match(collapseSign({ featureStd: 1e-4, featureRank: 30, featureDim: 100, batch: 256 }) ?? '', /barely vary \(std 1\.00e-4; spread ones ≈ 0\.100\)/);
  const tf = await import('@tensorflow/tfjs-core');
  const { Byol, convNet } = await import('../src/index.js');
  await tf.setBackend('cpu');
  const learner = new Byol({ encoder: convNet({ inputShape: [8, 8, 1], channels: [4, 4, 8], seed: 1 }), batchSize: 6, totalSteps: 2, projector: { hiddenDim: 8, outputDim: 4 }, predictor: { hiddenDim: 8 }, seed: 1 });
  const before = tf.memory().numTensors;
  const x = tf.randomNormal([6, 8, 8, 1], 0, 1, 'float32', 2) as import('@tensorflow/tfjs-core').Tensor4D;
  const d = await diagnose(learner, x);
  x.dispose();
  assert.equal(tf.memory().numTensors, before);
  assert.deepEqual([d.batch, d.featureDim], [6, 8]);
  assert.ok(d.featureRank > 1 && d.featureRank <= 6, `rank ${d.featureRank}`);
  assert.ok(d.featureStd > 0);
  learner.dispose();
});
