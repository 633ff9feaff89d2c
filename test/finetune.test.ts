/** Fine-tuning on few labels (paper §4.2, App. C): the class-balanced subset, and the fine-tuning itself. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { ByolError } from '../src/errors.js';
import { balancedSubset, finetune } from '../src/eval/finetune.js';
import { convNet } from '../src/nets/convnet.js';
import { resolveViewsConfig } from '../src/views/options.js';
import { useBackend } from '../src/node.js';

test('balanced subset: ⌊count/C⌋ per class (the first count mod C classes one more), fixed by the seed, sorted', () => {
  const labels = Int32Array.from({ length: 300 }, (_, i) => (i * 7) % 3);
  const s = balancedSubset(labels, 31, 5);
  const per = [0, 1, 2].map((c) => [...s].filter((i) => labels[i] === c).length);
  assert.deepEqual(per, [11, 10, 10]);
  assert.equal(new Set(s).size, 31);
  assert.deepEqual([...s], [...s].sort((a, b) => a - b));
  assert.deepEqual(balancedSubset(labels, 31, 5), s, 'same seed, same subset');
  assert.notDeepEqual([...balancedSubset(labels, 31, 6)], [...s], 'another seed, another subset');
  assert.throws(() => balancedSubset(labels, 2, 0), (e: unknown) => e instanceof ByolError && /option `count` must be an integer from 3/.test((e as Error).message));
  assert.throws(() => balancedSubset(Int32Array.from([0, 0, 0, 1]), 4, 0), /at most 1 images of class 1/);
});

test('fine-tuning learns a separable task, leaves the given encoder unchanged and leaks nothing', async () => {
  await useBackend('wasm');
  // Two classes of 28×28 grey images: dark with a bright top half, or dark with a bright left half.
  const make = (n: number, seed: number) => {
    const images = new Int32Array(n * 784);
    const labels = Int32Array.from({ length: n }, (_, i) => (i + seed) % 2);
    for (let i = 0; i < n; i++) for (let y = 0; y < 28; y++) for (let x = 0; x < 28; x++) images[i * 784 + y * 28 + x] = (labels[i] === 0 ? y < 14 : x < 14) ? 200 + ((i * 13 + x) % 50) : (i * 7 + y) % 40;
    return { images, shape: [n, 28, 28, 1] as const, labels };
  };
  const encoder = convNet({ inputShape: [28, 28, 1], channels: [4, 8, 16], seed: 3 });
  const before = encoder.getWeights().map((t) => t.dataSync().slice());
  const tensors = tf.memory().numTensors;
  const views = resolveViewsConfig('grey');
  const r = await finetune(encoder, make(64, 0), make(40, 1), { views, epochs: 5, batchSize: 16, learningRate: 0.05, seed: 1 });
  assert.ok(r.top1 >= 0.9, `top-1 ${r.top1}`);
  assert.equal(r.top5, 1, 'two classes: top-5 is always right');
  assert.equal(tf.memory().numTensors, tensors, 'nothing left behind');
  encoder.getWeights().forEach((t, i) => assert.deepEqual(t.dataSync(), before[i], 'the encoder given is unchanged'));
  encoder.dispose();
});
