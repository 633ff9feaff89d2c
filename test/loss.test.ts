import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { collapseStd, l2Normalize, negativesTerm, regressionLoss, symmetricLoss } from '../src/index.js';
import { assertClose, assertNoLeak, assertTensorClose, reference, tensorOf } from './helpers.js';

const L = reference.loss;
const inputs = () => [L.p1, L.p2, L.z1, L.z2].map((a) => tensorOf(a) as tf.Tensor2D) as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];

test('regression loss per example matches the PyTorch reference and equals 2 − 2·cos', () => {
  const [p1, , , z2] = inputs();
  const per = regressionLoss(p1, z2);
  assertTensorClose(per, L.perExample, 1e-5, 1e-5, 'perExample');
  const cos = tf.div(tf.sum(tf.mul(p1, z2), -1), tf.mul(tf.norm(p1, 'euclidean', -1), tf.norm(z2, 'euclidean', -1)));
  assertClose(per.dataSync(), tf.sub(2, tf.mul(2, cos)).dataSync(), 1e-5, 0, '2-2cos');
  tf.dispose([p1, z2, per, cos]);
});

test('closed forms: identical directions give 0, opposite 4, orthogonal 2; scale does not matter', () => {
  const p = tf.tensor2d([[1, 0], [0, 2], [3, 4]]);
  const z = tf.tensor2d([[5, 0], [0, -1], [-4, 3]]);
  assertClose(regressionLoss(p, z).dataSync(), [0, 4, 2], 1e-6, 0);
  assertClose(regressionLoss(tf.mul(p, 100) as tf.Tensor2D, z).dataSync(), [0, 4, 2], 1e-5, 0);
});

test('symmetric loss and its gradient match the reference', () => {
  const [p1, p2, z1, z2] = inputs();
  const f = (p: tf.Tensor) => symmetricLoss(p as tf.Tensor2D, p2, z1, z2);
  assertClose(f(p1).dataSync()[0]!, L.symmetric, 1e-5, 1e-5, 'symmetric');
  assertTensorClose(tf.grad(f)(p1), L.gradSymmetricP1, 1e-5, 1e-4, 'grad');
});

test('loss with in-batch negatives (InfoNCE^{α,β}) and its gradient match the reference', () => {
  const [p1, p2, z1, z2] = inputs();
  assertClose(negativesTerm(p1, z1, z2, L.alpha).dataSync()[0]!, L.negatives1, 1e-5, 1e-5, 'negatives1');
  assertClose(negativesTerm(p2, z2, z1, L.alpha).dataSync()[0]!, L.negatives2, 1e-5, 1e-5, 'negatives2');
  const f = (p: tf.Tensor) =>
    tf.add(
      symmetricLoss(p as tf.Tensor2D, p2, z1, z2),
      tf.mul(tf.add(negativesTerm(p as tf.Tensor2D, z1, z2, L.alpha), negativesTerm(p2, z2, z1, L.alpha)), L.beta),
    );
  assertClose(f(p1).dataSync()[0]!, L.full, 1e-5, 1e-5, 'full');
  assertTensorClose(tf.grad(f)(p1), L.gradFullP1, 1e-5, 1e-4, 'grad');
});

test('l2Normalize leaves an all-zero row at zero (no NaN)', () => {
  assertTensorClose(l2Normalize(tf.zeros([1, 3])), L.zeroRowNormalized, 0, 0);
});

test('collapse metric: reference value, 0 for a collapsed batch, ≈ 1/√d for random directions', () => {
  assertClose(collapseStd(tensorOf(L.z1) as tf.Tensor2D).dataSync()[0]!, L.collapseZ1, 1e-5, 1e-5);
  assertClose(collapseStd(tf.tile(tf.tensor2d([[1, 2, 3, 4]]), [8, 1])).dataSync()[0]!, 0, 1e-6, 0);
  const d = 256;
  const healthy = collapseStd(tf.randomNormal([4096, d], 0, 1, 'float32', 7)).dataSync()[0]!;
  assertClose(healthy, 1 / Math.sqrt(d), 0.002, 0, 'healthy');
});

test('loss functions leak no tensors', async () => {
  const xs = inputs();
  const [p1, p2, z1, z2] = xs;
  await assertNoLeak(() => {
    symmetricLoss(p1, p2, z1, z2).dispose();
    negativesTerm(p1, z1, z2, 0.1).dispose();
    collapseStd(z1).dispose();
    regressionLoss(p1, z2).dispose();
  });
  tf.dispose(xs);
  assert.ok(true);
});
