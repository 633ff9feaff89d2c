import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { ByolError, knnAccuracy, parseIdx } from '../src/node.js';
import { assertNoLeak } from './helpers.js';

function idx(shape: number[], data: number[], magic = [0, 0, 8, shape.length]): Uint8Array {
  const head = new Uint8Array(4 + 4 * shape.length);
  head.set(magic);
  const view = new DataView(head.buffer);
  shape.forEach((d, i) => view.setUint32(4 + 4 * i, d));
  return Uint8Array.from([...head, ...data]);
}

test('IDX: parses shape and data', () => {
  const a = parseIdx(idx([2, 2, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]), 'x.idx');
  assert.deepEqual(a.shape, [2, 2, 3]);
  assert.deepEqual(Array.from(a.data), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
});

test('IDX: bad magic, wrong type, truncated data and extra bytes are errors naming the file', () => {
  const cases: [Uint8Array, RegExp][] = [
    [idx([2], [1, 2], [1, 2, 8, 1]), /bad IDX magic number 0x01020801/],
    [idx([2], [1, 2], [0, 0, 0x0d, 1]), /data type 0xd is not unsigned byte/],
    [idx([3, 4], [1, 2, 3]), /need 12 data bytes; the file has 3/],
    [idx([2], [1, 2, 3]), /need 2 data bytes; the file has 3/],
    [Uint8Array.from([0, 0, 8, 3, 0, 0]), /truncated IDX header/],
  ];
  for (const [bytes, pattern] of cases) {
    assert.throws(() => parseIdx(bytes, 'data/bad.idx'), (e: unknown) => e instanceof ByolError && e.code === 'INVALID_INPUT' && /^data\/bad\.idx: /.test(e.message) && pattern.test(e.message));
  }
});

/**
 * Labelled points around `classes` random centres in `dim` dimensions (noise std `noise`): a train and a test set
 * drawn around the same centres, and a deterministic shuffle of the train labels (random labels).
 */
function clusters(classes: number, perClass: number, dim: number, noise: number, seed: number) {
  const centers = tf.randomNormal([classes, dim], 0, 1, 'float32', seed);
  const make = (s: number) =>
    tf.tidy(() => {
      const labels = Int32Array.from({ length: classes * perClass }, (_, i) => i % classes);
      const x = tf.add(tf.gather(centers, tf.tensor1d(labels, 'int32')), tf.randomNormal([labels.length, dim], 0, noise, 'float32', s));
      return { x: tf.keep(x) as tf.Tensor2D, labels };
    });
  const train = make(seed + 1);
  const testSet = make(seed + 2);
  centers.dispose();
  let state = seed + 6;
  const shuffled = Int32Array.from(train.labels, () => ((state = (state * 1103515245 + 12345) % 2 ** 31), state % classes));
  return { train, testSet, shuffled, dispose: () => tf.dispose([train.x, testSet.x]) };
}

test('kNN: about 100 % on well-separated classes, about chance on random labels, no leaks', async () => {
  const { train, testSet, shuffled, dispose } = clusters(5, 60, 32, 0.05, 1);
  await assertNoLeak(async () => assert.equal(await knnAccuracy(train.x, train.labels, testSet.x, testSet.labels, { k: 20, chunk: 64 }), 1));
  const acc = await knnAccuracy(train.x, shuffled, testSet.x, testSet.labels, { k: 20 });
  assert.ok(acc > 0.05 && acc < 0.4, `random labels give ${acc}`);
  dispose();
});

test('wasm fast path: transposed products equal the cpu backend\'s', async () => {
  const { useBackend } = await import('../src/node.js');
  const shapes: [number[], number[], boolean, boolean][] = [
    [[5, 7], [7, 3], false, false],
    [[7, 5], [7, 3], true, false],
    [[5, 7], [3, 7], false, true],
    [[7, 5], [3, 7], true, true],
    [[2, 7, 5], [2, 3, 7], true, true],
  ];
  // Plain JS data, so that both backends see the same numbers.
  const fill = (shape: number[], salt: number) => {
    const n = shape.reduce((x, y) => x * y, 1);
    return tf.tensor(Array.from({ length: n }, (_, j) => Math.sin(salt * 7.1 + j * 1.3)), shape);
  };
  const product = ([a, b, ta, tb]: [number[], number[], boolean, boolean], i: number) =>
    tf.tidy(() => Array.from(tf.matMul(fill(a, i), fill(b, 50 + i), ta, tb).dataSync()));
  const expected = shapes.map(product);
  await useBackend('wasm');
  try {
    shapes.forEach(([a, b, ta, tb], i) => {
      const got = product([a, b, ta, tb], i);
      got.forEach((v, j) => assert.ok(Math.abs(v - expected[i]![j]!) < 1e-4, `case ${i} [${j}]: ${v} vs ${expected[i]![j]}`));
    });
    // The wrapper's transposed copies are freed: no tensor and no backend buffer is left behind.
    const [tensors, buffers] = [tf.memory().numTensors, tf.backend().numDataIds()];
    tf.tidy(() => {
      tf.matMul(tf.ones([4, 3]), tf.ones([4, 2]), true, false);
      tf.matMul(tf.ones([4, 3]), tf.ones([2, 4]), true, true);
    });
    assert.equal(tf.memory().numTensors, tensors);
    assert.equal(tf.backend().numDataIds(), buffers);
  } finally {
    await useBackend('cpu');
  }
});

test('linear probe: about 100 % on well-separated classes, about chance on random labels, no leaks', async () => {
  const { linearProbe } = await import('../src/index.js');
  const { train, testSet, shuffled, dispose } = clusters(10, 40, 16, 0.1, 4);
  const before = tf.memory().numTensors;
  const good = await linearProbe(train.x, train.labels, testSet.x, testSet.labels, { epochs: 30, batchSize: 64 });
  assert.equal(tf.memory().numTensors, before, 'no tensors leaked');
  assert.ok(good.top1 > 0.98 && good.top5 === 1, JSON.stringify(good));
  const chance = await linearProbe(train.x, shuffled, testSet.x, testSet.labels, { epochs: 30, batchSize: 64 });
  assert.ok(chance.top1 < 0.25 && chance.top5 < 0.75, `random labels give top-1 ${chance.top1}, top-5 ${chance.top5}`);
  await assert.rejects(linearProbe(train.x, train.labels.slice(1), testSet.x, testSet.labels), (e: unknown) => e instanceof ByolError && e.option === 'trainLabels');
  dispose();
});

test('classCount handles label arrays too large to spread into Math.max', async () => {
  const { classCount } = await import('../src/eval/labels.js');
  const big = new Uint8Array(2_000_000);
  big[1_999_999] = 41;
  assert.equal(classCount(big, Int32Array.from([3])), 42);
  assert.equal(classCount(new Int32Array(0)), 0);
});
