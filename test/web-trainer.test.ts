/**
 * The page's run logic under Node (cpu and wasm backends): the data order, the sample format, and a snapshot that continues
 * exactly, without leaking tensors. The page itself is tested in Chromium by `npm run test:web`.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { ByolError } from '../src/errors.js';
import { useBackend } from '../src/node.js';
import { parseSample, type PageDataset } from '../web/src/data.js';
import { PageRun, viewsFor } from '../web/src/trainer.js';

function dataset(n: number): PageDataset {
  const pixels = Uint8Array.from({ length: n * 28 * 28 }, (_, i) => (i * 37 + Math.floor(i / 784) * 11) % 256);
  return { name: 'synthetic', n, size: 28, channels: 1, pixels, labels: Int32Array.from({ length: n }, (_, i) => i % 3), classNames: ['a', 'b', 'c'], ids: Array.from({ length: n }, (_, i) => `#${i}`) };
}

const config = { encoder: 'convnet' as const, batch: 8, steps: 6, seed: 3, hidden: 32, lr: 0.2 };

test('page data order: each epoch a seeded permutation walked in whole batches; deterministic', async () => {
  await tf.setBackend('cpu');
  const run = new PageRun(dataset(20), config);
  try {
    // 20 images, batch 8: 2 batches per epoch, the last 4 images of each permutation left for that epoch.
    const epoch = (e: number) => [...run.batchIndices(2 * e), ...run.batchIndices(2 * e + 1)];
    for (const e of [0, 1, 2]) assert.equal(new Set(epoch(e)).size, 16, 'no image twice in an epoch');
    assert.notDeepEqual(epoch(0), epoch(1), 'each epoch its own order');
    assert.deepEqual(epoch(1), [...new PageRun(dataset(20), config).batchIndices(2), ...run.batchIndices(3)]);
  } finally {
    run.dispose();
  }
});

test('a page run\'s snapshot continues exactly (same losses), and a run leaks no tensor', async () => {
  await useBackend('wasm'); // deterministic, and fast enough for a ConvNet (the page's fallback backend too)
  const before = tf.memory().numTensors;
  const straight = new PageRun(dataset(24), config);
  const losses: number[] = [];
  for (let i = 0; i < 4; i++) losses.push((await straight.trainStep()).loss);
  straight.dispose();
  assert.equal(tf.memory().numTensors, before, 'train and dispose: nothing left');
  const first = new PageRun(dataset(24), config);
  await first.trainStep();
  await first.trainStep();
  const snap = await first.snapshot();
  first.dispose();
  const second = await PageRun.restore(dataset(24), snap);
  try {
    assert.equal(second.step, 2);
    assert.deepEqual([(await second.trainStep()).loss, (await second.trainStep()).loss], losses.slice(2));
    const features = await second.embed();
    assert.equal(features.length, 24 * 128);
    const knn = await second.knn(features);
    assert.ok(knn !== null && knn >= 0 && knn <= 1);
  } finally {
    second.dispose();
  }
  assert.equal(tf.memory().numTensors, before, 'snapshot, restore, embed and kNN: nothing left');
});

test('page inputs are checked: a sample file\'s header, the batch against the images, the image size', () => {
  const header = Buffer.alloc(24);
  header.write('BYOLSMP1', 0, 'latin1');
  [2, 28, 28, 1].forEach((v, i) => header.writeUInt32LE(v, 8 + 4 * i));
  const ok = Buffer.concat([header, Buffer.from([3, 7]), Buffer.alloc(2 * 784, 9)]);
  const d = parseSample(new Uint8Array(ok));
  assert.deepEqual([d.n, d.size, d.channels, [...d.labels!]], [2, 28, 1, [3, 7]]);
  assert.throws(() => parseSample(new Uint8Array(ok.subarray(0, 100))), (e: unknown) => e instanceof ByolError && /does not match its 100 bytes/.test((e as Error).message));
  assert.throws(() => parseSample(new Uint8Array(Buffer.from('PNG.....'.repeat(4)))), /not a byol sample/);
  assert.throws(() => new PageRun(dataset(4), config), /batch 8 is more than the 4 images/);
  assert.throws(() => viewsFor({ size: 32, channels: 1 }), /trains on 28-pixel images; these are 32/);
});
