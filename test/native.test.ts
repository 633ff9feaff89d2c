import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { Byol, loadNativeAddon, nativeLoadError, setNativePrecision, useBackend } from '../src/node.js';
import { batchNorm, fuseBatchNormRelu, fusedBatchNormClass } from '../src/nets/batchnorm.js';
import { cloneArchitecture } from '../src/nets/encoder.js';
import { convNet } from '../src/nets/convnet.js';
import { mlpHead } from '../src/nets/mlp.js';
import { resnet } from '../src/nets/resnet.js';
import { fusedAddClass, residualAdd } from '../src/nets/residual.js';
import { checkNativeEnv, isStoredBf16 } from '../src/native/backend.js';
import { ByolError } from '../src/errors.js';

const addon = loadNativeAddon();
const skip = addon ? false : `native addon not built (${nativeLoadError()})`;

/** Runs `f` on the cpu backend and on native; returns both results as plain arrays. */
async function both(f: () => tf.Tensor[]): Promise<[number[][], number[][]]> {
  await useBackend('cpu');
  const ref = tf.tidy(f).map((t) => {
    const v = Array.from(t.dataSync());
    t.dispose();
    return v;
  });
  await useBackend('native');
  const got = tf.tidy(f).map((t) => {
    const v = Array.from(t.dataSync());
    t.dispose();
    return v;
  });
  await useBackend('cpu');
  return [ref, got];
}

/**
 * The loss Σ model(x)·w and its gradients with respect to x and every trainable weight, as arrays (loss first); asserts
 * that the call leaves no tensor behind.
 */
function lossAndGrads(model: tfl.LayersModel, x: tf.Tensor, w: tf.Tensor, training: boolean, what: string): number[][] {
  const start = tf.memory().numTensors;
  const xv = tf.variable(x);
  const f = () => tf.sum(tf.mul(model.apply(xv, { training }) as tf.Tensor, w)) as tf.Scalar;
  const vars = [xv, ...model.trainableWeights.map((v) => v.read() as tf.Variable)];
  const { value, grads } = tf.variableGrads(f, vars);
  const out = [value, ...vars.map((v) => grads[v.name]!)].map((t) => Array.from(t.dataSync()));
  tf.dispose([value, xv, ...Object.values(grads)]);
  assert.equal(tf.memory().numTensors, start, `${what}: tensors left behind`);
  return out;
}

/** max |a − b| / max(1, max |b|) ≤ tol. */
function relClose(got: number[], ref: number[], tol: number, what: string): void {
  assert.equal(got.length, ref.length, what);
  const scale = ref.reduce((m, v) => Math.max(m, Math.abs(v)), 1);
  const err = got.reduce((m, v, i) => Math.max(m, Math.abs(v - ref[i]!)), 0) / scale;
  assert.ok(err <= tol, `${what}: relative error ${err.toExponential(2)}`);
}

const rand = (shape: number[], seed: number) => {
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(Array.from({ length: n }, (_, i) => Math.sin(seed * 12.9898 + i * 78.233) * 1.5), shape);
};

const convCases: { x: number[]; f: number[]; s: number | [number, number]; p: 'same' | 'valid' | number; d?: number }[] = [
  { x: [2, 9, 7, 3], f: [3, 3, 3, 5], s: 1, p: 'same' },
  { x: [1, 8, 8, 1], f: [3, 3, 1, 4], s: 2, p: 'same' },
  { x: [3, 10, 11, 4], f: [5, 3, 4, 6], s: [2, 1], p: 'valid' },
  { x: [1, 7, 7, 3], f: [7, 7, 3, 8], s: 2, p: 'same' },
  { x: [2, 6, 5, 2], f: [1, 1, 2, 3], s: 2, p: 'valid' },
  { x: [2, 9, 9, 3], f: [3, 3, 3, 2], s: 1, p: 1 },
  { x: [1, 32, 32, 16], f: [3, 3, 16, 32], s: 1, p: 'same' },
];

test('native Conv2D and both of its gradients match the cpu backend', { skip }, async () => {
  for (const [i, c] of convCases.entries()) {
    const [ref, got] = await both(() => {
      const x = rand(c.x, i) as tf.Tensor4D;
      const f = rand(c.f, i + 50) as tf.Tensor4D;
      const y = tf.conv2d(x, f, c.s, c.p);
      const w = rand(y.shape, i + 99);
      const [dx, df] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.s, c.p), w)))([x, f]);
      return [y, dx!, df!];
    });
    ['y', 'dx', 'dfilter'].forEach((name, j) => relClose(got[j]!, ref[j]!, 1e-4, `case ${i} ${name}`));
  }
  // Dilation (forward).
  const [ref, got] = await both(() => [tf.conv2d(rand([2, 12, 12, 3], 1) as tf.Tensor4D, rand([3, 3, 3, 2], 2) as tf.Tensor4D, 1, 'same', 'NHWC', 2)]);
  relClose(got[0]!, ref[0]!, 1e-4, 'dilated');
});

test('the matrix-product (im2col) convolution forward matches the cpu backend on every geometry; tuned mode keeps it only for small multi-tap shapes', { skip }, async () => {
  const a = addon!;
  try {
    a.setConvGemm(1);
    const cases = [...convCases.map((c, i) => ({ ...c, i })), { x: [2, 12, 12, 3], f: [3, 3, 3, 2], s: 1 as const, p: 'same' as const, d: 2, i: 90 }];
    for (const c of cases) {
      const [ref, got] = await both(() => [tf.conv2d(rand(c.x, c.i) as tf.Tensor4D, rand(c.f, c.i + 50) as tf.Tensor4D, c.s, c.p, 'NHWC', c.d ?? 1)]);
      relClose(got[0]!, ref[0]!, 1e-4, `gemm case ${c.i}`);
    }
    // Tuned: a 4×4 image with a 3×3 kernel is a candidate (both forms timed), a 1×1 kernel and a 9×9 image are not.
    a.setConvGemm(2);
    const shapes = [
      { x: [4, 4, 4, 32], f: [3, 3, 32, 32] },
      { x: [4, 4, 4, 32], f: [1, 1, 32, 32] },
      { x: [2, 9, 9, 8], f: [3, 3, 8, 8] },
    ];
    for (const [i, c] of shapes.entries()) {
      const [ref, got] = await both(() => [tf.conv2d(rand(c.x, i) as tf.Tensor4D, rand(c.f, i + 7) as tf.Tensor4D, 1, 'same')]);
      relClose(got[0]!, ref[0]!, 1e-4, `tuned shape ${i}`);
    }
    for (const key of a.convGemmShapes()) {
      const n = key.split(',').slice(2).map(Number); // fwd,<precision>,x[4],w[4],y[4],...
      assert.ok(n[4]! * n[5]! > 1 && n[9]! * n[10]! <= 64, `tuned into the matrix product: ${key}`);
    }
  } finally {
    a.setConvGemm(2);
  }
  assert.throws(() => a.setConvGemm(3 as 2), /0, 1 or 2/);
});

test('mirrored convolutions (forward on the backward-data kernel and back) match the cpu backend: square and unequal channels, asymmetric and no padding, bf16 with stored activations; tuned mode mirrors only stride-1 multi-tap passes', { skip }, async () => {
  const a = addon!;
  // Stride-1, undilated: what can be mirrored. Unequal channels catch a filter not transposed; 4×2 'same' pads
  // asymmetrically (0 top, 1 bottom, …); 'valid' has no padding (the mirror pads K − 1).
  const cases = [
    { x: [2, 9, 7, 3], f: [3, 3, 3, 5], p: 'same' as const },
    { x: [2, 7, 6, 3], f: [4, 2, 3, 5], p: 'same' as const },
    { x: [2, 8, 9, 4], f: [3, 5, 4, 6], p: 'valid' as const },
    { x: [2, 9, 9, 3], f: [3, 3, 3, 2], p: 1 },
    { x: [1, 4, 4, 40], f: [3, 3, 40, 40], p: 'same' as const },
  ];
  const run = (c: (typeof cases)[number], i: number) => () => {
    const x = rand(c.x, i) as tf.Tensor4D;
    const f = rand(c.f, i + 50) as tf.Tensor4D;
    const y = tf.conv2d(x, f, 1, c.p);
    const w = rand(y.shape, i + 99);
    const [dx, df] = tf.grads((u: tf.Tensor, v: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(u as tf.Tensor4D, v as tf.Tensor4D, 1, c.p), w)))([x, f]);
    return [y, dx!, df!];
  };
  try {
    a.setConvGemm(0);
    a.setConvMirror(1);
    for (const [i, c] of cases.entries()) {
      const [ref, got] = await both(run(c, i));
      ['y', 'dx', 'dfilter'].forEach((name, j) => relClose(got[j]!, ref[j]!, 1e-4, `mirrored case ${i} ${name}`));
    }
    // bf16, with the input and output of the forward stored as bf16 (a ReLU before, a batch norm reading after): the
    // mirrored passes agree with the direct ones within bf16 precision, and are not bit-equal to them (other kernels
    // ran; the forward alone may round to the same bf16 outputs).
    await useBackend('native');
    if (setNativePrecision('bf16')) {
      const c = cases[4]!;
      const f = () =>
        tf.tidy(() => {
          const x = rand(c.x, 4) as tf.Tensor4D;
          const k = tf.mul(rand(c.f, 54), 0.2) as tf.Tensor4D;
          const probe = rand([1, 4, 4, 40], 7);
          const loss = (u: tf.Tensor, v: tf.Tensor) => tf.sum(tf.mul(tf.relu(tf.conv2d(tf.relu(u) as tf.Tensor4D, v as tf.Tensor4D, 1, 'same')), probe));
          const [dx, dk] = tf.grads(loss)([x, k]);
          return [tf.conv2d(tf.relu(x), k, 1, 'same'), dx!, dk!].map((t) => Array.from(t.dataSync()));
        });
      a.setConvMirror(1);
      const mirrored = f();
      a.setConvMirror(0);
      const direct = f();
      direct.forEach((d, j) => {
        const err = Math.sqrt(d.reduce((s, v, k) => s + (v - mirrored[j]![k]!) ** 2, 0) / d.reduce((s, v) => s + v * v, 0));
        assert.ok(err < 2e-2, `bf16 output ${j}: mirrored vs direct ${err.toExponential(2)}`);
      });
      assert.ok(mirrored.some((m, j) => m.some((v, k) => v !== direct[j]![k])), 'the mirrored passes ran other kernels');
      setNativePrecision('fp32');
    }
    await useBackend('cpu');
    // Tuned: stride-1 3×3 passes of at least 2^27 flops are candidates (both ways timed); smaller, strided and 1×1 ones
    // never are. Whatever each chooses, results agree with the direct kernels.
    const shapes = [
      { x: [8, 16, 16, 64], f: [3, 3, 64, 64], s: 1 },
      { x: [2, 8, 8, 16], f: [3, 3, 16, 16], s: 1 },
      { x: [8, 16, 16, 64], f: [1, 1, 64, 64], s: 1 },
      { x: [8, 16, 16, 64], f: [3, 3, 64, 64], s: 2 },
    ];
    await useBackend('native');
    for (const [i, c] of shapes.entries()) {
      const f = () =>
        tf.tidy(() => {
          const x = rand(c.x, i) as tf.Tensor4D;
          const k = tf.mul(rand(c.f, i + 7), 0.1) as tf.Tensor4D;
          return [tf.conv2d(x, k, c.s, 'same'), tf.grad((u: tf.Tensor) => tf.sum(tf.square(tf.conv2d(u as tf.Tensor4D, k, c.s, 'same'))))(x)].map((t) => Array.from(t.dataSync()));
        });
      a.setConvMirror(0);
      const direct = f();
      a.setConvMirror(2);
      f().forEach((g, j) => relClose(g, direct[j]!, 1e-4, `tuned shape ${i} output ${j}`));
    }
    await useBackend('cpu');
    for (const key of a.convMirrorShapes()) {
      const n = key.split(',').slice(2).map(Number); // pass,<precision>,x[4],w[4],y[4],strides[2],dilations[2],...
      const flops = 2 * n[8]! * n[9]! * n[10]! * n[11]! * n[4]! * n[5]! * n[6]!;
      assert.ok(/^(fwd|bwd_data),/.test(key) && n[4]! * n[5]! > 1 && n[12] === 1 && n[13] === 1 && flops >= 2 ** 27, `tuned into the mirror: ${key}`);
    }
  } finally {
    a.setConvGemm(2);
    a.setConvMirror(2);
    setNativePrecision('fp32');
    await useBackend('cpu');
  }
  assert.throws(() => a.setConvMirror(3 as 2), /0, 1 or 2/);
});

test('native fused convolution and matrix products (bias, ReLU, transposes, batches) match the cpu backend', { skip }, async () => {
  const [ref, got] = await both(() => {
    const x = rand([2, 8, 8, 3], 3) as tf.Tensor4D;
    const f = rand([3, 3, 3, 4], 4) as tf.Tensor4D;
    const bias = rand([4], 5) as tf.Tensor1D;
    const out: tf.Tensor[] = [tf.fused.conv2d({ x, filter: f, strides: 1, pad: 'same', bias, activation: 'relu' })];
    for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]] as const) {
      const a = rand(ta ? [7, 5] : [5, 7], 6);
      const b = rand(tb ? [3, 7] : [7, 3], 7);
      out.push(tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D, ta, tb));
      out.push(tf.matMul(rand(ta ? [4, 7, 5] : [4, 5, 7], 8) as tf.Tensor3D, rand(tb ? [4, 3, 7] : [4, 7, 3], 9) as tf.Tensor3D, ta, tb));
    }
    out.push(tf.matMul(rand([4, 5, 7], 10) as tf.Tensor3D, rand([1, 7, 3], 11) as tf.Tensor3D));
    out.push(tf.fused.matMul({ a: rand([6, 9], 12) as tf.Tensor2D, b: rand([9, 4], 13) as tf.Tensor2D, bias: rand([4], 14), activation: 'relu' }));
    out.push(tf.fused.matMul({ a: rand([6, 9], 12) as tf.Tensor2D, b: rand([9, 4], 13) as tf.Tensor2D, activation: 'elu' })); // left to the cpu kernel
    return out;
  });
  got.forEach((g, i) => relClose(g, ref[i]!, 1e-4, `output ${i}`));
});

test('fused batch norm (training pass, gradients, moving statistics) on native matches the stock layer on cpu', { skip }, async () => {
  const shapes = [[5, 7], [64, 33], [2, 4, 3, 6], [1, 5, 5, 3], [3, 1, 1, 1], [2, 9, 7, 16]];
  for (const [i, shape] of shapes.entries()) {
    const run = () => {
      const start = tf.memory().numTensors;
      const layer = batchNorm({ momentum: 0.9, epsilon: 1e-5 }, { gammaInitializer: tfl.initializers.constant({ value: 1.3 }), betaInitializer: tfl.initializers.constant({ value: -0.2 }) });
      const x = tf.tidy(() => tf.add(tf.mul(rand(shape, i), 2), 0.5));
      const w = rand(shape, i + 40);
      layer.build(shape);
      const f = (a: tf.Tensor) => tf.sum(tf.mul(layer.apply(a, { training: true }) as tf.Tensor, w));
      const y = layer.apply(x, { training: true }) as tf.Tensor;
      const { value, grads } = tf.variableGrads(() => f(x) as tf.Scalar, layer.trainableWeights.map((v) => v.read() as tf.Variable));
      const dx = tf.grad(f)(x);
      const out = tf.tidy(() => [y, dx, ...Object.values(grads), ...layer.getWeights().slice(2)].map((t) => Array.from(t.dataSync())));
      tf.dispose([y, dx, x, w, value, ...Object.values(grads)]);
      layer.weights.forEach((v) => v.dispose());
      assert.equal(tf.memory().numTensors, start, `case ${i}: tensors left behind`);
      return out;
    };
    await useBackend('cpu');
    const ref = run();
    await useBackend('native');
    const got = run();
    await useBackend('cpu');
    ['y', 'dx', 'dgamma', 'dbeta', 'moving mean', 'moving variance'].forEach((name, j) => relClose(got[j]!, ref[j]!, 1e-4, `case ${i} ${name}`));
  }
  // It saves as the stock layer, so exported models load anywhere.
  const layer = batchNorm({ momentum: 0.9, epsilon: 1e-5 });
  assert.equal(layer.getClassName(), 'BatchNormalization');
  assert.equal(layer.getConfig()['momentum'], 0.9);
});

test('batch norm + ReLU in one kernel: the builders mark exactly the batch norms only a ReLU reads; outputs and gradients equal the unfused model and the cpu backend; nothing leaks', { skip }, async () => {
  await useBackend('cpu');
  const marked = (m: tfl.LayersModel) => m.layers.filter((l) => l instanceof fusedBatchNormClass() && (l as unknown as { reluFollows?: boolean }).reluFollows === true).map((l) => l.name);
  // ConvNet: all three; ResNet-18: the stem and each block's first (the second feeds the residual sum, the shortcut's
  // feeds it too); the MLP head: its one batch norm.
  const conv = convNet({ inputShape: [8, 8, 3], channels: [4, 6, 8], seed: 1 });
  const res = resnet({ depth: 18, stem: 'cifar', inputShape: [8, 8, 3], seed: 2 });
  const head = mlpHead({ inputDim: 8, hiddenDim: 16, outputDim: 4, seed: 3 });
  assert.equal(marked(conv).length, 3);
  assert.deepEqual(marked(res).sort(), ['bn1', ...[1, 2, 3, 4].flatMap((g) => [`layer${g}.0.bn1`, `layer${g}.1.bn1`])].sort());
  assert.equal(marked(head).length, 1);
  // A copy rebuilt from the config (a target network, a resumed run) is marked again.
  const copy = cloneArchitecture(res);
  assert.deepEqual(marked(copy).sort(), marked(res).sort());
  copy.dispose();
  // A batch norm read by a ReLU and by anything else is not fused.
  const input = tfl.input({ shape: [4] });
  const bn = batchNorm({ momentum: 0.9, epsilon: 1e-5 }).apply(input) as tfl.SymbolicTensor;
  const both = tfl.model({ inputs: input, outputs: [tfl.layers.reLU().apply(bn) as tfl.SymbolicTensor, tfl.layers.dense({ units: 2 }).apply(bn) as tfl.SymbolicTensor] });
  assert.equal(fuseBatchNormRelu(both), 0);
  both.dispose();
  // Nor one whose output is also the model's.
  const input2 = tfl.input({ shape: [4] });
  const bn2 = batchNorm({ momentum: 0.9, epsilon: 1e-5 }).apply(input2) as tfl.SymbolicTensor;
  const exposed = tfl.model({ inputs: input2, outputs: [bn2, tfl.layers.reLU().apply(bn2) as tfl.SymbolicTensor] });
  assert.equal(fuseBatchNormRelu(exposed), 0);
  exposed.dispose();

  const run = (model: tfl.LayersModel, fused: boolean, x: tf.Tensor, w: tf.Tensor) => {
    const Cls = fusedBatchNormClass();
    const wanted = new Set(marked(model));
    for (const l of model.layers) if (l instanceof Cls) (l as unknown as { reluFollows: boolean }).reluFollows = fused && wanted.has(l.name);
    const out = lossAndGrads(model, x, w, true, `${model.name} fused=${fused}`);
    for (const l of model.layers) if (l instanceof Cls) (l as unknown as { reluFollows: boolean }).reluFollows = wanted.has(l.name);
    return out;
  };
  for (const model of [conv, res]) {
    const results: number[][][] = [];
    // The cpu backend only for the ConvNet: a ResNet-18 gradient there takes seconds.
    for (const backend of model === conv ? (['cpu', 'native', 'native'] as const) : (['native', 'native'] as const)) {
      await useBackend(backend);
      const x = rand([4, 8, 8, 3], 7);
      const w = rand(model.outputs[0]!.shape.map((d) => d ?? 4), 8);
      const before = new Map(model.getWeights().map((t, i) => [i, Array.from(t.dataSync())]));
      const fused = results.length === (model === conv ? 2 : 1);
      if (fused) {
        // The fused kernel runs, once per marked layer and call.
        const profile = await tf.profile(() => tf.tidy(() => model.apply(x, { training: true }) as tf.Tensor));
        assert.equal(profile.kernels.filter((k) => k.name === 'ByolBatchNormReluTrain').length, marked(model).length, `${model.name}: fused kernel per marked layer`);
      }
      results.push(run(model, fused || backend === 'cpu', x, w));
      // Moving statistics were updated by the calls; put them back so that every run starts alike.
      model.getWeights().forEach((t, i) => {
        const v = model.weights[i]!;
        if (v.trainable) return;
        const saved = tf.tensor(before.get(i)!, t.shape);
        v.write(saved);
        saved.dispose();
      });
      tf.dispose([x, w]);
    }
    const [fused, plain, cpu] = results.reverse() as [number[][], number[][], number[][] | undefined];
    ['loss', 'dx', ...model.trainableWeights.map((v) => v.name)].forEach((name, j) => {
      relClose(fused[j]!, plain[j]!, 1e-5, `${model.name} fused vs unfused ${name}`);
      if (cpu) relClose(fused[j]!, cpu[j]!, 1e-3, `${model.name} fused vs cpu ${name}`);
    });
  }
  await useBackend('cpu');
  [conv, res, head].forEach((m) => m.dispose());
});

test('residual sum + ReLU in one kernel: the builders mark every residual sum (a ReLU alone reads each); outputs and gradients equal the unfused sums on native (fp32 and bf16) and the cpu backend; it saves as Add; nothing leaks', { skip }, async () => {
  await useBackend('cpu');
  const Sum = fusedAddClass();
  const sums = (m: tfl.LayersModel) => m.layers.filter((l): l is tfl.layers.Layer & { reluFollows: boolean } => l instanceof Sum);
  const res = resnet({ depth: 18, stem: 'cifar', inputShape: [8, 8, 3], seed: 2 });
  assert.equal(sums(res).length, 8);
  assert.ok(sums(res).every((l) => l.reluFollows), 'every residual sum of ResNet-18 is marked');
  // Saved as the stock layer; a copy rebuilt from the config (a target network, a resumed run) is marked again.
  assert.equal(sums(res)[0]!.getClassName(), 'Add');
  const copy = cloneArchitecture(res);
  assert.equal(sums(copy).filter((l) => l.reluFollows).length, 8);
  copy.dispose();
  // A sum read by something besides a ReLU is not fused.
  const i1 = tfl.input({ shape: [4] });
  const i2 = tfl.input({ shape: [4] });
  const s = residualAdd().apply([i1, i2]) as tfl.SymbolicTensor;
  const open = tfl.model({ inputs: [i1, i2], outputs: [tfl.layers.reLU().apply(s) as tfl.SymbolicTensor, tfl.layers.dense({ units: 2 }).apply(s) as tfl.SymbolicTensor] });
  assert.equal(fuseBatchNormRelu(open), 0);
  open.dispose();

  const x = rand([4, 8, 8, 3], 7);
  const w = tf.abs(rand([4, 512], 8)); // positive: a loss without cancellation, comparable across backends
  const run = (fused: boolean) => {
    sums(res).forEach((l) => (l.reluFollows = fused));
    // Inference mode throughout: batch norm reads its moving statistics (training mode would update them), so every run
    // sees the same model. The sums are fused in either mode.
    const out = lossAndGrads(res, x, w, false, `fused=${fused}`);
    sums(res).forEach((l) => (l.reluFollows = true));
    return out;
  };
  const cpu = run(true); // no fused kernel on cpu: the stock sum, then ReLU
  await useBackend('native');
  try {
    for (const precision of ['fp32', 'bf16'] as const) {
      if (!setNativePrecision(precision)) continue;
      const profile = await tf.profile(() => tf.tidy(() => res.apply(x, { training: false }) as tf.Tensor));
      assert.equal(profile.kernels.filter((k) => k.name === 'ByolAddRelu').length, 8, `${precision}: the fused kernel runs once per residual sum`);
      const fused = run(true);
      const plain = run(false);
      // The same arithmetic: bit-equal to the unfused sum and ReLU, in either precision (in bf16 rounding the sum once
      // after ReLU equals rounding it before: max(0, ·) commutes with rounding).
      fused.forEach((g, j) => {
        const k = g.findIndex((v, i) => !Object.is(v, plain[j]![i]));
        assert.ok(g.length === plain[j]!.length && k < 0, `${precision}: fused ≠ unfused at output ${j}, value ${k}: ${g[k]} vs ${plain[j]![k]}`);
      });
      if (precision === 'fp32') fused.forEach((g, j) => relClose(g, cpu[j]!, 1e-3, `fp32 vs cpu, output ${j}`));
    }
  } finally {
    setNativePrecision('fp32');
    await useBackend('cpu');
  }
  tf.dispose([x, w]);
  res.dispose();
});

test('a whole BYOL step on native matches the cpu backend to 1e-3', { skip }, async () => {
  const run = async () => {
    const learner = new Byol({ encoder: { name: 'convnet', inputShape: [8, 8, 3] }, batchSize: 6, totalSteps: 10, projector: { hiddenDim: 32, outputDim: 16 }, predictor: { hiddenDim: 32 }, seed: 5, warmupSteps: 0, baseLearningRate: 1 });
    const x = rand([6, 8, 8, 3], 20);
    const y = rand([6, 8, 8, 3], 21);
    const losses = [(await learner.step(x, y)).loss, (await learner.step(y, x)).loss];
    const weights = learner.onlineWeights.map((v) => Array.from(v.dataSync()));
    const target = learner.targetWeights.map((v) => Array.from(v.dataSync()));
    learner.dispose();
    tf.dispose([x, y]);
    return { losses, weights, target };
  };
  await useBackend('cpu');
  const ref = await run();
  await useBackend('native');
  const got = await run();
  await useBackend('cpu');
  relClose(got.losses, ref.losses, 1e-3, 'losses');
  got.weights.forEach((w, i) => relClose(w, ref.weights[i]!, 1e-3, `online weight ${i}`));
  got.target.forEach((w, i) => relClose(w, ref.target[i]!, 1e-3, `target weight ${i}`));
});

test('native kernels leak neither tensors nor native memory over 1 000 steps', { skip }, async () => {
  await useBackend('native');
  const x = rand([4, 16, 16, 8], 1) as tf.Tensor4D;
  const f = rand([3, 3, 8, 8], 2) as tf.Tensor4D;
  const step = () =>
    tf.tidy(() => {
      const [dx, df] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.relu(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, 'same'))))([x, f]);
      return tf.add(tf.sum(dx!), tf.sum(tf.matMul(tf.reshape(df!, [72, 8]), tf.reshape(df!, [72, 8]), true, false)));
    }).dispose();
  for (let i = 0; i < 200; i++) step();
  const tensors = tf.memory().numTensors;
  global.gc?.();
  const rss = process.memoryUsage().rss;
  for (let i = 0; i < 1000; i++) step();
  global.gc?.();
  const grown = (process.memoryUsage().rss - rss) / 2 ** 20;
  assert.equal(tf.memory().numTensors, tensors);
  assert.ok(grown < 32, `RSS grew ${grown.toFixed(1)} MiB over 1 000 steps`);
  tf.dispose([x, f]);
  await useBackend('cpu');
});

test('native element-wise, broadcasting, reductions and tile match the cpu backend', { skip }, async () => {
  const [ref, got] = await both(() => {
    const x = rand([2, 3, 4, 5], 1);
    const out: tf.Tensor[] = [];
    for (const other of [rand([2, 3, 4, 5], 2), rand([5], 3), rand([1, 1, 1, 5], 4), rand([2, 1, 1, 1], 5), rand([2, 3, 1, 1], 6), tf.scalar(0.7), rand([3, 1, 5], 7), rand([2, 1, 1, 5], 8), rand([2, 3, 1, 5], 9), rand([1, 3, 4, 1], 10)]) {
      out.push(tf.add(x, other), tf.sub(other, x), tf.mul(x, other), tf.div(x, tf.add(tf.abs(other), 0.5)), tf.maximum(x, other), tf.minimum(other, x), tf.squaredDifference(x, other));
    }
    out.push(tf.pow(x, 2), tf.pow(tf.abs(x), 1.5), tf.relu(x), tf.step(x, 0.3), tf.square(x), tf.sqrt(tf.abs(x)), tf.rsqrt(tf.add(tf.abs(x), 1)), tf.exp(x), tf.neg(x), tf.abs(x));
    for (const axes of [[0], [0, 1, 2], [3], [2, 3], [1], [0, 2], [1, 2]]) out.push(tf.sum(x, axes), tf.mean(x, axes, true), tf.max(x, axes), tf.min(x, axes));
    const pooledGrad = (p: 'same' | 'valid', k: number, st: number) =>
      tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(v as tf.Tensor4D, k, st, p), rand(tf.maxPool(v as tf.Tensor4D, k, st, p).shape, 11))))(x);
    out.push(tf.maxPool(x as tf.Tensor4D, 2, 2, 'valid'), pooledGrad('valid', 2, 2), pooledGrad('same', 3, 2), pooledGrad('same', 3, 1));
    out.push(tf.batchNorm(x, rand([5], 20), tf.add(tf.abs(rand([5], 21)), 0.1), rand([5], 22), rand([5], 23), 1e-5), tf.batchNorm(x, rand([5], 24), tf.add(tf.abs(rand([5], 25)), 0.1)));
    out.push(tf.batchNorm(x, rand([1, 1, 1, 5], 26), tf.add(tf.abs(rand([1, 1, 1, 5], 27)), 0.1), undefined, rand([1, 1, 1, 5], 28), 1e-3));
    out.push(tf.tile(rand([1, 1, 1, 5], 8), [2, 3, 4, 1]), tf.tile(rand([2, 3], 9), [3, 2]), tf.tile(rand([4], 10), [3]));
    // ReLU's gradient (one fused kernel on native), with inputs exactly 0 among them.
    const withZeros = tf.maximum(tf.sub(x, 0.4), 0);
    out.push(tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.relu(v), rand(x.shape, 12))))(withZeros), tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.relu(v), rand(x.shape, 13))))(x));
    return out;
  });
  got.forEach((g, i) => relClose(g, ref[i]!, 1e-5, `output ${i}`));
  // NaN passes through ReLU's gradient as through tfjs's Step.
  const [nanRef, nanGot] = await both(() => [tf.grad((v: tf.Tensor) => tf.sum(tf.relu(v)))(tf.tensor([NaN, -1, 0, 2]))]);
  assert.deepEqual(nanGot, nanRef);
  assert.deepEqual(nanGot[0], [NaN, 0, 0, 1]);
});

test('native max pooling and its gradient match the cpu backend: odd sizes, batch 1, 1 and 3 channels, ties, NaN', { skip }, async () => {
  const cases: [number[], number, number, 'same' | 'valid'][] = [
    [[1, 7, 5, 1], 2, 2, 'valid'],
    [[1, 7, 5, 1], 3, 2, 'same'],
    [[3, 9, 8, 3], 3, 1, 'same'],
    [[2, 28, 28, 32], 2, 2, 'valid'],
    [[2, 11, 13, 17], 3, 2, 'same'],
    // Windows that tile the input exactly (the kernel's fast path): 3×3 of stride 3, 2×2 over an odd channel count.
    [[2, 9, 6, 3], 3, 3, 'valid'],
    [[3, 4, 6, 5], 2, 2, 'valid'],
  ];
  const [ref, got] = await both(() =>
    cases.flatMap(([shape, k, st, p], i) => {
      // Rounded values make ties, so "the first maximum of the window" is checked too.
      const x = tf.round(tf.mul(rand(shape, 30 + i), 2)) as tf.Tensor4D;
      const w = rand(tf.maxPool(x, k, st, p).shape, 40 + i);
      return [tf.maxPool(x, k, st, p), tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(v as tf.Tensor4D, k, st, p), w)))(x)];
    }),
  );
  got.forEach((g, i) => relClose(g, ref[i]!, 1e-6, `pooling output ${i}`));
  // NaN never wins a window; a window of NaN only gives −∞ and passes no gradient, as on cpu.
  const special = () => {
    const x = tf.tensor4d([NaN, 1, NaN, NaN, 2, NaN, -Infinity, -Infinity], [1, 2, 4, 1]);
    return [tf.maxPool(x, 2, 2, 'valid'), tf.grad((v: tf.Tensor) => tf.sum(tf.maxPool(v as tf.Tensor4D, 2, 2, 'valid')))(x)];
  };
  const [sRef, sGot] = await both(special);
  assert.deepEqual(sGot, sRef);
});

test('the fused native LARS step matches the PyTorch reference (decay and trust ratio skipped for 1-D params)', { skip }, async () => {
  const { reference, tensorOf } = await import('./helpers.js');
  const { Lars } = await import('../src/index.js');
  const F = reference.lars;
  await useBackend('native');
  try {
    assert.ok(tf.getKernel('ByolLarsUpdate', 'native'), 'the fused kernel is registered');
    const params = F.params.map((p: { shape: number[]; data: number[] }) => tf.variable(tensorOf(p)));
    const opt = new Lars(params, { momentum: F.momentum, weightDecay: F.weightDecay, eta: F.eta });
    opt.setState({ kind: 'lars', updates: 0, slots: { mu: F.mu.map((a: { data: number[] }) => Float32Array.from(a.data)) } });
    F.grads.forEach((gs: { shape: number[]; data: number[] }[], s: number) => {
      const grads = gs.map(tensorOf);
      opt.apply(grads, F.lrs[s]);
      tf.dispose(grads);
      params.forEach((p: tf.Variable, i: number) => relClose(Array.from(p.dataSync()), F.expected[s].params[i].data, 1e-5, `step ${s} param ${i}`));
    });
    opt.dispose();
    tf.dispose(params);
  } finally {
    await useBackend('cpu');
  }
});

test('the fused native EMA update matches the reference; τ = 1 and τ = 0 stay exact', { skip }, async () => {
  const { reference, tensorOf } = await import('./helpers.js');
  const { emaUpdate } = await import('../src/index.js');
  const E = reference.ema;
  await useBackend('native');
  try {
    assert.ok(tf.getKernel('ByolEmaUpdate', 'native') && tf.getKernel('ByolEmaUpdateAll', 'native'), 'the fused kernels are registered');
    const target = E.target.map((a: { shape: number[]; data: number[] }) => tf.variable(tensorOf(a)));
    const online = E.online.map((a: { shape: number[]; data: number[] }) => tf.variable(tensorOf(a)));
    emaUpdate(target, online, E.tau);
    target.forEach((v: tf.Variable, i: number) => relClose(Array.from(v.dataSync()), E.expected[i].data, 1e-6, `target ${i}`));
    const before = target.map((v: tf.Variable) => Array.from(v.dataSync()));
    emaUpdate(target, online, 1);
    target.forEach((v: tf.Variable, i: number) => assert.deepEqual(Array.from(v.dataSync()), before[i]));
    emaUpdate(target, online, 0);
    target.forEach((v: tf.Variable, i: number) => assert.deepEqual(Array.from(v.dataSync()), Array.from(online[i].dataSync())));
    tf.dispose([...target, ...online]);
  } finally {
    await useBackend('cpu');
  }
  // All weights in one call: sizes that split across threads mid-weight, and one weight of no values.
  const sizes = [5, 40_000, 3, 0, 70_001, 1];
  const run = async (backend: 'cpu' | 'native') => {
    await useBackend(backend);
    const target = sizes.map((n, i) => tf.variable(rand([n], 60 + i)));
    const online = sizes.map((n, i) => tf.variable(rand([n], 70 + i)));
    const before = tf.memory().numTensors;
    emaUpdate(target, online, 0.9961);
    assert.equal(tf.memory().numTensors, before, `${backend}: no tensor left`);
    const out = target.map((v) => Array.from(v.dataSync()));
    tf.dispose([...target, ...online]);
    return out;
  };
  try {
    const ref = await run('cpu');
    const got = await run('native');
    got.forEach((g, i) => relClose(g, ref[i]!, 1e-6, `weight ${i} (${sizes[i]} values)`));
  } finally {
    await useBackend('cpu');
  }
});

/** Switches to native in bf16 mode; where the CPU has no fast bf16 kernels, skips the test (back on cpu) and says false. */
async function nativeBf16OrSkip(t: { skip(message: string): void }): Promise<boolean> {
  await useBackend('native');
  if (setNativePrecision('bf16')) return true;
  t.skip('this CPU has no fast bf16 kernels');
  await useBackend('cpu');
  return false;
}

test('bf16 mode: convolutions, their gradients and matrix products within bf16 precision of float32; fp32 restores exactness', { skip }, async (t) => {
  if (!(await nativeBf16OrSkip(t))) return;
  setNativePrecision('fp32');
  const f = () => {
    const x = rand([2, 9, 9, 8], 1) as tf.Tensor4D;
    const w = tf.mul(rand([3, 3, 8, 16], 2), 0.3) as tf.Tensor4D;
    const y = tf.conv2d(x, w, [2, 1], 'same');
    const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, [2, 1], 'same'), y)))([x, w]);
    return [y, dx!, dw!, tf.matMul(rand([33, 20], 3) as tf.Tensor2D, rand([33, 7], 4) as tf.Tensor2D, true, false)];
  };
  const [ref, got32] = await both(f);
  ref.forEach((r, i) => relClose(got32[i]!, r, 1e-4, `fp32 output ${i}`));
  await useBackend('native');
  assert.equal(setNativePrecision('bf16'), true);
  const got16 = tf.tidy(f).map((x) => Array.from(x.dataSync()));
  setNativePrecision('fp32');
  // bfloat16 keeps 8 significant bits (unit roundoff 2^-8 ≈ 0.4 %) in both operands of every product: results
  // agree to a few times that in norm (‖got − ref‖ / ‖ref‖); a wrong conversion or layout would be off by ~100 %.
  ref.forEach((r, i) => {
    const err = Math.sqrt(r.reduce((a, v, j) => a + (v - got16[i]![j]!) ** 2, 0) / r.reduce((a, v) => a + v * v, 0));
    assert.ok(err < 3e-2, `bf16 output ${i}: relative error ${err.toExponential(2)}`);
    assert.ok(err > 0, `bf16 output ${i} differs from float32 (bf16 really ran)`);
  });
  await useBackend('cpu');
});

test('converted copies (filter layouts, bf16 inputs) serve every call on the same tensor, never a later tensor in the same memory, and go with their tensor', { skip }, async () => {
  const a = addon!;
  await useBackend('native');
  const precisions = setNativePrecision('bf16') ? (['fp32', 'bf16'] as const) : (['fp32'] as const);
  // Direct convolutions only: a forward tuned into the matrix product reads the filter as it is (no copy).
  a.setConvGemm(0);
  try {
    for (const precision of precisions) {
      setNativePrecision(precision);
      // A forward and both gradients of two convolutions with the same filter (two views), as a training step has.
      const step = (w: tf.Tensor4D) =>
        tf.tidy(() => {
          const x1 = rand([2, 8, 8, 16], 1) as tf.Tensor4D;
          const x2 = rand([2, 8, 8, 16], 2) as tf.Tensor4D;
          const g = tf.grads((f: tf.Tensor) => tf.add(tf.sum(tf.square(tf.conv2d(x1, f as tf.Tensor4D, 1, 'same'))), tf.sum(tf.conv2d(x2, f as tf.Tensor4D, 2, 'same'))));
          const [df] = g([w]);
          return [tf.conv2d(x1, w, 1, 'same'), df!].map((t) => Array.from(t.dataSync()));
        });
      const before = a.convertedStats();
      a.setConvertedLimit(0);
      const w1 = rand([3, 3, 16, 32], 5) as tf.Tensor4D;
      const plain = step(w1);
      a.setConvertedLimit(1 << 30);
      const kept = step(w1);
      // The same conversions, once: bit-equal to converting in every call.
      assert.deepEqual(kept, plain, `${precision}: copies change no value`);
      assert.ok(a.convertedStats().tokens > before.tokens, `${precision}: the live filter's copy is kept`);
      const bytes = a.convertedStats().bytes;
      step(w1);
      assert.equal(a.convertedStats().bytes, bytes, `${precision}: a second step on the same filter converts nothing new`);
      // Another filter of that shape while w1's copy is kept, then one after w1 is gone (most likely in its memory):
      // each gets its own copy.
      const w2 = rand([3, 3, 16, 32], 6) as tf.Tensor4D;
      const other = step(w2);
      w1.dispose();
      const w3 = tf.mul(w2, -1) as tf.Tensor4D;
      const later = step(w3);
      a.setConvertedLimit(0);
      assert.deepEqual(other, step(w2), `${precision}: a second live filter gets its own copy`);
      assert.deepEqual(later, step(w3), `${precision}: a new tensor in old memory gets its own copy`);
      w2.dispose();
      w3.dispose();
      a.setConvertedLimit(1 << 30);
      assert.deepEqual(a.convertedStats(), before, `${precision}: every copy went with its tensor`);
      // Bounded: with room for less than one filter copy, none outlives its call.
      a.setConvertedLimit(1000);
      const w4 = rand([3, 3, 16, 32], 7) as tf.Tensor4D;
      step(w4);
      assert.ok(a.convertedStats().bytes <= 1000 + 3 * 3 * 16 * 32 * 4, JSON.stringify(a.convertedStats()));
      w4.dispose();

      // A mirrored copy has other contents than the plain copy of the same filter, possibly in the same layout (equal
      // channels): passes on plain and on mirrored kernels, in turns, with one token, equal the same passes without
      // copies (a cache that told copies apart by layout alone would hand one the other's).
      const geom = [[2, 8, 8, 16], [3, 3, 16, 16], [2, 8, 8, 16], [1, 1], [1, 1], [1, 1], [1, 1]];
      const xs = Float32Array.from({ length: 2048 }, (_, i) => Math.sin(i * 0.37));
      const ws = Float32Array.from({ length: 2304 }, (_, i) => Math.cos(i * 0.91) * 0.1);
      const token = 2 ** 50 + 1; // never one of the backend's tokens (they count up from 1)
      const pass = (kind: 'fwd' | 'bwd', mirror: 0 | 1) => {
        a.setConvMirror(mirror);
        const out = new Float32Array(2048);
        if (kind === 'fwd') a.conv2dForward(xs, ws, out, ...geom, token);
        else a.conv2dBackpropInput(xs, ws, out, ...geom, token, 0);
        return Array.from(out);
      };
      const order = [['fwd', 0], ['bwd', 1], ['bwd', 0], ['fwd', 1]] as const;
      a.setConvertedLimit(0);
      const uncached = order.map(([kind, mirror]) => pass(kind, mirror));
      a.setConvertedLimit(1 << 30);
      const cached = order.map(([kind, mirror]) => pass(kind, mirror));
      assert.deepEqual(cached, uncached, `${precision}: mirrored and plain copies of one filter kept apart`);
      assert.ok(a.convertedStats().tokens > before.tokens, `${precision}: the copies were kept`);
      a.forgetConverted(token);
      a.setConvMirror(2);
      assert.deepEqual(a.convertedStats(), before, `${precision}: the copies went with their token`);
    }
  } finally {
    a.setConvMirror(2);
    a.setConvGemm(2);
    a.setConvertedLimit(1 << 30);
    setNativePrecision('fp32');
    await useBackend('cpu');
  }
});

/** float32 → bfloat16 → float32, rounding to nearest even (NaN stays NaN): the reference of bf16 storage. */
function roundBf16(v: number): number {
  const f = new Float32Array([v]);
  const u = new Uint32Array(f.buffer);
  const bits = u[0]!;
  if ((bits & 0x7fffffff) > 0x7f800000) return NaN;
  u[0] = ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) << 16;
  return f[0]!;
}

test('bf16 activations: convolution, batch norm, ReLU and max-pool outputs stored as bf16 (rounded to nearest even), read right by every reader, turned back for good; convolutions and their gradients see exactly what they would have converted', { skip }, async (t) => {
  if (!(await nativeBf16OrSkip(t))) return;
  try {
    // The addon's conversion against the reference, with ties, signs, tiny and huge values, ±∞ and NaN.
    const special = [0, -0, 1, -1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -9, 3.4e38, -3.4e38, 1e-30, Infinity, -Infinity, NaN, 0.1, -7.3];
    const xs = Float32Array.from({ length: 1001 }, (_, i) => (i < special.length ? special[i]! : Math.sin(i * 12.9898) * 10 ** ((i % 9) - 4)));
    const packedXs = new Float32Array(Math.ceil(xs.length / 2));
    const back = new Float32Array(xs.length);
    addon!.packBf16(xs, packedXs);
    addon!.unpackBf16(packedXs, back);
    xs.forEach((v, i) => assert.ok(Object.is(back[i], Math.fround(roundBf16(v))) || (Number.isNaN(back[i]) && Number.isNaN(v)), `bf16(${v}) = ${back[i]}, expected ${roundBf16(v)}`));

    const x = rand([2, 6, 6, 8], 3) as tf.Tensor4D;
    const expected = Array.from(x.dataSync(), (v) => roundBf16(Math.max(0, v)));
    const start = tf.memory().numTensors;
    // dataSync: rounded values, and float32 for good afterwards.
    const r = tf.relu(x);
    assert.equal(isStoredBf16(r), true);
    assert.deepEqual(Array.from(r.dataSync()), expected);
    assert.equal(isStoredBf16(r), false);
    r.dispose();
    // A 2-D ReLU (a head's) stays float32.
    tf.tidy(() => assert.equal(isStoredBf16(tf.relu(tf.reshape(x, [24, 24]))), false));
    // Readers that know nothing of bf16 (cpu kernels: transpose, a contiguous slice's view; native reductions) and
    // those that read it as it is (max pooling and its gradient, sums, ReLU) each see the rounded values.
    const rounded = tf.tensor(expected, x.shape);
    const readers: [string, (v: tf.Tensor) => tf.Tensor][] = [
      ['transpose', (v) => tf.transpose(v, [0, 3, 1, 2])],
      ['slice', (v) => tf.slice(v, [1, 0, 0, 0], [1, 6, 6, 8])],
      ['mean', (v) => tf.mean(v, [1, 2])],
      ['maxPool', (v) => tf.maxPool(v as tf.Tensor4D, 2, 2, 'valid')],
      ['maxPool twice', (v) => tf.maxPool(tf.maxPool(v as tf.Tensor4D, 2, 1, 'same'), 3, 2, 'same')],
      ['maxPool gradient', (v) => tf.grad((u: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(u as tf.Tensor4D, 2, 2, 'valid'), tf.reshape(tf.range(1, 9 * 8 * 2 + 1), [2, 3, 3, 8]))))(v)],
      ['add', (v) => tf.add(v, x)],
      ['add both', (v) => tf.add(v, tf.relu(tf.neg(x)))],
      ['relu again', (v) => tf.relu(v)],
      // Batch norm in inference form (evaluation): its output is stored as bf16 too.
      ['batchNorm (inference)', (v) => tf.batchNorm(v, tf.linspace(-0.2, 0.3, 8), tf.linspace(0.5, 2, 8), tf.linspace(0, 1, 8), tf.linspace(1, 3, 8), 1e-3)],
    ];
    for (const [name, read] of readers) {
      const got = tf.tidy(() => {
        const stored = tf.relu(x);
        assert.equal(isStoredBf16(stored), true, name);
        return Array.from(read(stored).dataSync());
      });
      const ref = tf.tidy(() => Array.from(read(rounded).dataSync()));
      // 'add both': the second operand is stored as bf16 too, and so is their sum; batch norm's output is stored so.
      const want = name === 'add both' ? tf.tidy(() => Array.from(tf.add(rounded, tf.tensor(Array.from(tf.relu(tf.neg(x)).dataSync()), x.shape)).dataSync(), roundBf16)) : name.startsWith('batchNorm') ? ref.map(roundBf16) : ref;
      relClose(got, want, 1e-6, `reader ${name}`);
    }
    // Convolutions and both gradients read stored bf16 exactly as they would have converted float32 themselves (direct
    // convolutions: a forward tuned into the matrix product would sum in another order).
    addon!.setConvGemm(0);
    const w = tf.tidy(() => tf.mul(rand([3, 3, 8, 4], 4), 0.3)) as tf.Tensor4D;
    const probe = rand([2, 3, 3, 4], 5);
    const convRun = () =>
      tf.tidy(() => {
        const f = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(tf.relu(a) as tf.Tensor4D, b as tf.Tensor4D, 2, 'same'), probe));
        const [dx, dw] = tf.grads(f)([x, w]);
        return [tf.conv2d(tf.relu(x), w, 2, 'same'), dx!, dw!].map((v) => Array.from(v.dataSync()));
      });
    const withStorage = convRun();
    setNativePrecision('bf16', { bf16Activations: false });
    const withoutStorage = convRun();
    // The output itself is stored as bf16 too: the float32 output, rounded.
    assert.deepEqual(withStorage, [withoutStorage[0]!.map(roundBf16), ...withoutStorage.slice(1)], 'convolution on stored bf16 = on float32 converted by oneDNN');
    addon!.setConvGemm(2);
    setNativePrecision('bf16');
    tf.dispose([rounded, w, probe]);
    assert.equal(tf.memory().numTensors, start, 'tensors left behind');
    x.dispose();

    // Residual blocks in training mode (batch norm + ReLU fused, residual sums reading stored shortcuts, global
    // pooling reading a stored block output), 2 048 values per batch-norm channel: the loss and every gradient with
    // bf16 activations stay as close to fp32 as bf16 arithmetic alone keeps them (a misread bf16 buffer or a wrong
    // mask would be off by ~100 %, or NaN).
    const bn = { momentum: 0.9, epsilon: 1e-5 };
    const input = tfl.input({ shape: [12, 12, 3] });
    const conv = (v: tfl.SymbolicTensor, name: string) =>
      tfl.layers.conv2d({ filters: 16, kernelSize: 3, padding: 'same', useBias: false, name, kernelInitializer: tfl.initializers.glorotNormal({ seed: name.length }) }).apply(v) as tfl.SymbolicTensor;
    let h = tfl.layers.reLU().apply(batchNorm(bn).apply(conv(input, 'stem'))) as tfl.SymbolicTensor;
    for (const b of ['a', 'b']) {
      const y = tfl.layers.reLU().apply(batchNorm(bn).apply(conv(h, `${b}1`))) as tfl.SymbolicTensor;
      const z = batchNorm(bn).apply(conv(y, `${b}22`)) as tfl.SymbolicTensor;
      h = tfl.layers.reLU().apply(tfl.layers.add().apply([z, h])) as tfl.SymbolicTensor;
    }
    const model = tfl.model({ inputs: input, outputs: tfl.layers.globalAveragePooling2d({}).apply(h) as tfl.SymbolicTensor });
    assert.equal(fuseBatchNormRelu(model), 3);
    const xi = rand([8, 12, 12, 3], 7);
    const target = rand([8, 16], 8);
    const grads = (precision: 'fp32' | 'bf16', storage: boolean) => {
      setNativePrecision(precision, { bf16Activations: storage });
      const before = model.getWeights().map((v) => v.clone());
      const out = tf.tidy(() => {
        const loss = () => tf.sum(tf.square(tf.sub(model.apply(xi, { training: true }) as tf.Tensor, target))) as tf.Scalar;
        const { value, grads: g } = tf.variableGrads(loss, model.trainableWeights.map((v) => v.read() as tf.Variable));
        return [value, ...Object.values(g)].map((v) => Array.from(v.dataSync()));
      });
      model.setWeights(before); // the moving statistics, as they were
      tf.dispose(before);
      return out;
    };
    const stored = grads('bf16', true);
    const plain = grads('bf16', false);
    const fp32 = grads('fp32', false);
    const norm = (a: number[], b: number[]) => Math.sqrt(a.reduce((s, v, i) => s + (v - b[i]!) ** 2, 0) / Math.max(1e-30, b.reduce((s, v) => s + v * v, 0)));
    let changed = 0;
    stored.forEach((g, i) => {
      const storageError = norm(g, plain[i]!);
      const bf16Error = norm(plain[i]!, fp32[i]!);
      changed = Math.max(changed, storageError);
      assert.ok(storageError <= Math.max(2 * bf16Error, 1e-2) && norm(g, fp32[i]!) < 0.2, `loss/gradient ${i}: bf16 activations ${storageError.toExponential(2)} from float32 activations, bf16 alone ${bf16Error.toExponential(2)} from fp32`);
    });
    // Not the same numbers: the residual sums really read rounded shortcuts.
    assert.ok(changed > 0, 'bf16 activations changed nothing');
    tf.dispose([xi, target]);
    model.dispose();
  } finally {
    addon!.setConvGemm(2);
    await useBackend('native');
    setNativePrecision('fp32');
    await useBackend('cpu');
  }
});

test('the primitive cache is bounded: 200 distinct shapes keep at most its limits, and resident memory stops growing', { skip }, async () => {
  const { spawnSync } = await import('node:child_process');
  // In a process of its own, so that resident memory is this test's alone. Each shape gets a conv with a
  // 3×3×256×256 filter (2.4 MB, reordered into a buffer kept with the primitive) on an input 1×1×W×256.
  const script = `
    const { loadNativeAddon } = await import(${JSON.stringify(new URL('../src/node.js', import.meta.url).href)});
    const a = loadNativeAddon();
    const rss = () => process.memoryUsage().rss / 2 ** 20;
    const w = new Float32Array(3 * 3 * 256 * 256).fill(0.01);
    const out = { after: [], stats: [] };
    for (let width = 1; width <= 200; width++) {
      const x = new Float32Array(width * 256).fill(1), y = new Float32Array(width * 256);
      a.conv2dForward(x, w, y, [1, 1, width, 256], [3, 3, 256, 256], [1, 1, width, 256], [1, 1], [1, 1], [1, 1], [1, 1]);
      if (width === 40 || width === 200) { out.after.push(rss()); out.stats.push(a.cacheStats()); }
    }
    console.log(JSON.stringify(out));`;
  // Direct convolutions only: tuning would add a matrix-product or a mirrored primitive beside each 1×W convolution.
  const run = (env: Record<string, string>) => {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, BYOL_NATIVE_CONV_GEMM: '0', BYOL_NATIVE_CONV_MIRROR: '0', ...env }, timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as { after: number[]; stats: { entries: number; bytes: number; limit: number; byteLimit: number }[] };
  };
  const bounded = run({ BYOL_NATIVE_CACHE: '16', BYOL_NATIVE_CACHE_MB: '64' });
  assert.deepEqual(bounded.stats.map((s) => [s.limit, s.byteLimit]), [[16, 64 << 20], [16, 64 << 20]]);
  for (const s of bounded.stats) assert.ok(s.entries <= 16 && s.bytes <= 64 << 20, JSON.stringify(s));
  const growth = bounded.after[1]! - bounded.after[0]!;
  assert.ok(growth < 60, `resident memory grew ${growth.toFixed(0)} MiB over the last 160 shapes`);
  // Without a bound the same shapes keep every buffer (measured: 472 MB, resident memory +425 MiB).
  const open = run({ BYOL_NATIVE_CACHE: '100000', BYOL_NATIVE_CACHE_MB: '100000' });
  assert.equal(open.stats[1]!.entries, 200);
  assert.ok(open.stats[1]!.bytes > 200 * 2e6, `${open.stats[1]!.bytes} bytes kept without a bound`);
});

test('native Pad and Slice (row copies) match the cpu backend: ranks 1–4, a constant, slices that are and are not contiguous', { skip }, async () => {
  const cases: [number[], [number, number][]][] = [
    [[2, 5, 6, 3], [[0, 0], [1, 1], [2, 1], [0, 0]]],
    [[1, 4, 4, 2], [[1, 0], [0, 2], [3, 0], [1, 1]]],
    [[3, 4], [[1, 2], [0, 3]]],
    [[7], [[2, 1]]],
  ];
  for (const [i, [shape, pads]] of cases.entries()) {
    const [ref, got] = await both(() => {
      const x = rand(shape, i + 3);
      const padded = tf.pad(x, pads, i === 1 ? 0.5 : 0);
      const back = tf.slice(padded, pads.map((p) => p[0]), shape); // the gradient of a pad: not contiguous
      const head = tf.slice(padded, pads.map(() => 0), padded.shape.map((d, k) => (k === 0 ? Math.max(1, d - 1) : d))); // contiguous
      return [padded, back, head];
    });
    for (let k = 0; k < 3; k++) assert.deepEqual(got[k], ref[k], `case ${i}, output ${k}`);
  }
});

test('native environment variables: a value a variable does not take is a coded error naming it, before the backend registers; empty counts as unset', async () => {
  const good: Record<string, string>[] = [
    {},
    { BYOL_NATIVE: '0' },
    { BYOL_NATIVE_CONV_GEMM: '0', BYOL_NATIVE_CONV_MIRROR: '2' },
    { BYOL_NATIVE_BF16_ACTIVATIONS: '1', BYOL_NATIVE_MALLOC: '0' },
    { BYOL_NATIVE_CACHE: '16', BYOL_NATIVE_CACHE_MB: '0', BYOL_NATIVE_CONVERTED_MB: '512' },
    { BYOL_NATIVE_POOL_MB: '0.5', BYOL_OMP_WAIT: 'keep', BYOL_NATIVE_CONV_MIRROR: '' },
  ];
  for (const env of good) assert.doesNotThrow(() => checkNativeEnv(env), JSON.stringify(env));
  const bad: [string, string, RegExp][] = [
    ['BYOL_NATIVE', 'yes', /"0" or "1"/],
    ['BYOL_NATIVE_CONV_MIRROR', 'off', /"0" or "1" or "2"/],
    ['BYOL_NATIVE_CONV_GEMM', '3', /"0" or "1" or "2"/],
    ['BYOL_NATIVE_BF16_ACTIVATIONS', 'false', /"0" or "1"/],
    ['BYOL_NATIVE_MALLOC', 'off', /"0" or "1"/],
    ['BYOL_NATIVE_CACHE', '0', /a whole number ≥ 1/],
    ['BYOL_NATIVE_CACHE_MB', '-1', /a whole number ≥ 0/],
    ['BYOL_NATIVE_CONVERTED_MB', '1.5', /a whole number ≥ 0/],
    ['BYOL_NATIVE_POOL_MB', 'lots', /a number of MB ≥ 0/],
    ['BYOL_OMP_WAIT', 'spin', /"keep"/],
  ];
  for (const [name, value, expected] of bad) {
    assert.throws(
      () => checkNativeEnv({ [name]: value }),
      (e: unknown) => e instanceof ByolError && e.code === 'INVALID_OPTION' && e.message.startsWith(`environment variable ${name} must be `) && expected.test(e.message) && e.message.endsWith(`got "${value}"`),
      `${name}=${value}`,
    );
  }
  // Through the public entry: the backend refuses to register.
  const saved = process.env['BYOL_NATIVE_CONV_MIRROR'];
  process.env['BYOL_NATIVE_CONV_MIRROR'] = 'off';
  try {
    await assert.rejects(useBackend('native'), /environment variable BYOL_NATIVE_CONV_MIRROR must be "0" or "1" or "2"; got "off"/);
  } finally {
    if (saved === undefined) delete process.env['BYOL_NATIVE_CONV_MIRROR'];
    else process.env['BYOL_NATIVE_CONV_MIRROR'] = saved;
    await useBackend('cpu');
  }
});

test('OpenMP wait policy: a short spin unless the user chose one (set before the runtime loads)', async () => {
  const { applyWaitPolicy } = await import('../src/native/backend.js');
  const env = (e: Record<string, string>) => {
    const copy: NodeJS.ProcessEnv = { ...e };
    applyWaitPolicy(copy);
    return copy;
  };
  assert.equal(env({})['GOMP_SPINCOUNT'], '1000');
  assert.deepEqual(env({ OMP_WAIT_POLICY: 'active' }), { OMP_WAIT_POLICY: 'active' });
  assert.deepEqual(env({ GOMP_SPINCOUNT: '50000' }), { GOMP_SPINCOUNT: '50000' });
  assert.deepEqual(env({ BYOL_OMP_WAIT: 'keep' }), { BYOL_OMP_WAIT: 'keep' });
  // In this process the addon was loaded through loadNativeAddon, which applied it first.
  if (loadNativeAddon() && process.env['OMP_WAIT_POLICY'] === undefined && process.env['BYOL_OMP_WAIT'] !== 'keep') assert.ok(process.env['GOMP_SPINCOUNT'] !== undefined);
});
