/**
 * The wasm backend trains convolutional encoders: its missing Conv2DBackpropFilter and its fast Conv2DBackpropInput
 * and Tile (src/wasm-kernels.ts) against the cpu backend's kernels, then whole BYOL steps of every built-in encoder.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { Byol, loadNativeAddon, useBackend, type BuiltinEncoderName } from '../src/node.js';
import { setWasmConvChunk } from '../src/wasm-kernels.js';

/** The same computation on the cpu backend and on wasm, as plain arrays. */
async function both(f: () => tf.Tensor[]): Promise<[Float32Array[], Float32Array[]]> {
  const run = async (backend: 'cpu' | 'wasm') => {
    await useBackend(backend);
    const out = tf.tidy(f);
    const values = out.map((t) => t.dataSync() as Float32Array);
    tf.dispose(out);
    return values;
  };
  return [await run('cpu'), await run('wasm')];
}

function close(got: Float32Array, ref: Float32Array, tol: number, what: string): void {
  assert.equal(got.length, ref.length, what);
  let err = 0;
  let scale = 1;
  for (let i = 0; i < ref.length; i++) {
    err = Math.max(err, Math.abs(got[i]! - ref[i]!));
    scale = Math.max(scale, Math.abs(ref[i]!));
  }
  assert.ok(err / scale <= tol, `${what}: relative error ${(err / scale).toExponential(2)}`);
}

const convCases: { x: [number, number, number, number]; f: [number, number, number, number]; s: number | [number, number]; p: 'same' | 'valid' | number }[] = [
  { x: [2, 9, 7, 3], f: [3, 3, 3, 5], s: 1, p: 'same' },
  { x: [1, 8, 8, 1], f: [3, 3, 1, 4], s: 2, p: 'same' },
  { x: [3, 10, 11, 4], f: [5, 3, 4, 6], s: [2, 1], p: 'valid' },
  { x: [2, 32, 32, 3], f: [7, 7, 3, 8], s: 2, p: 'same' }, // the ImageNet stem
  { x: [2, 6, 5, 2], f: [1, 1, 2, 3], s: 2, p: 'valid' }, // a projection shortcut
  { x: [2, 9, 9, 3], f: [3, 3, 3, 2], s: 1, p: 1 },
  { x: [4, 8, 8, 16], f: [3, 3, 16, 8], s: 1, p: 'same' },
];

test('wasm convolution gradients (filter and input) match the cpu backend, in one chunk and in many', async () => {
  for (const chunk of [16 * 1024 * 1024, 50]) {
    const previous = setWasmConvChunk(chunk);
    try {
      for (const [i, c] of convCases.entries()) {
        const [ref, got] = await both(() => {
          const x = tf.randomUniform(c.x, -1, 1, 'float32', i + 1) as tf.Tensor4D;
          const w = tf.randomUniform(c.f, -1, 1, 'float32', i + 50) as tf.Tensor4D;
          const r = tf.randomUniform(tf.conv2d(x, w, c.s, c.p).shape, -1, 1, 'float32', i + 99);
          const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.s, c.p), r)))([x, w]);
          return [dx!, dw!];
        });
        close(got[0]!, ref[0]!, 1e-5, `case ${i} dx (chunk ${chunk})`);
        close(got[1]!, ref[1]!, 1e-5, `case ${i} dw (chunk ${chunk})`);
      }
    } finally {
      setWasmConvChunk(previous);
    }
  }
});

test('wasm Tile matches the cpu backend over ranks, shapes and repetitions', async () => {
  const cases: [number[], number[]][] = [
    [[1, 1, 1, 32], [4, 5, 3, 1]],
    [[2, 3], [3, 2]],
    [[5], [4]],
    [[2, 1, 3], [1, 4, 2]],
    [[1, 2, 2, 3], [2, 1, 3, 2]],
  ];
  for (const [shape, reps] of cases) {
    const [ref, got] = await both(() => [tf.tile(tf.randomUniform(shape, -1, 1, 'float32', 7), reps)]);
    assert.deepEqual(got[0], ref[0], `${shape} × ${reps}`);
  }
});

const native = loadNativeAddon() !== null;

test('a BYOL step of every built-in encoder trains on wasm, leaks nothing, and (with the native backend) matches it', async () => {
  // [encoder, input, batch, compare with native]: the ImageNet ResNets only train here (their stems' kernels are
  // compared above; the native comparison of a whole ResNet-50 step would double this test's time).
  const encoders: [BuiltinEncoderName, [number, number, number], number, boolean][] = [
    ['convnet', [28, 28, 1], 8, true],
    ['resnet18-cifar', [8, 8, 3], 4, true],
    ['resnet18', [32, 32, 3], 4, false],
    ['resnet50', [32, 32, 3], 2, false],
  ];
  for (const [name, shape, batch, compare] of encoders) {
    const run = async (backend: 'wasm' | 'native') => {
      await useBackend(backend);
      const learner = new Byol({ encoder: { name, inputShape: shape }, batchSize: batch, totalSteps: 10, projector: { hiddenDim: 32, outputDim: 16 }, predictor: { hiddenDim: 32 }, seed: 1 });
      const [a, b] = tf.tidy(() => [tf.randomUniform([batch, ...shape], 0, 1, 'float32', 1), tf.randomUniform([batch, ...shape], 0, 1, 'float32', 2)]);
      const before = (await learner.getState()).tensors.onlineWeights[0]!.slice();
      const losses = [(await learner.step(a!, b!)).loss];
      // After the first step (which creates the optimizer's slots), a step leaves no tensor and no backend buffer.
      const tensors = tf.memory().numTensors;
      const buffers = (tf.engine().backend as unknown as { numDataIds(): number }).numDataIds();
      losses.push((await learner.step(b!, a!)).loss);
      assert.equal(tf.memory().numTensors, tensors, `${name} on ${backend}: tensors leaked`);
      assert.equal((tf.engine().backend as unknown as { numDataIds(): number }).numDataIds(), buffers, `${name} on ${backend}: backend buffers leaked`);
      const after = (await learner.getState()).tensors.onlineWeights[0]!;
      learner.dispose();
      tf.dispose([a!, b!]);
      return { losses, before, after };
    };
    const w = await run('wasm');
    assert.ok(w.losses.every(Number.isFinite), `${name}: losses ${w.losses}`);
    assert.ok(w.after.some((v, i) => v !== w.before[i]), `${name}: the first layer's weights moved`);
    if (native && compare) {
      const n = await run('native');
      close(Float32Array.from(w.losses), Float32Array.from(n.losses), 1e-4, `${name}: losses vs native`);
      close(w.after, n.after, 1e-4, `${name}: first-layer weights after two steps vs native`);
    }
  }
});
