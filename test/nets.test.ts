import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { ByolError, cloneArchitecture, convNet, fusedBatchNormClass, mlpHead, resnet, resnetFeatureDim } from '../src/index.js';
import { assertNoLeak } from './helpers.js';
import { leanConv2dClass } from '../src/nets/conv.js';
import { useBackend } from '../src/node.js';

const trainableCount = (m: tfl.LayersModel) => m.trainableWeights.reduce((n, w) => n + w.shape.reduce((a: number, b) => a * (b ?? 1), 1), 0);

/** Closed-form trainable-parameter count of a basic-block ResNet-18 of width w (He et al. Table 1). */
function resnet18Params(w: number, stem: 'imagenet' | 'cifar'): number {
  const conv = (k: number, cin: number, cout: number) => k * k * cin * cout;
  const bn = (c: number) => 2 * c;
  let n = conv(stem === 'imagenet' ? 7 : 3, 3, 64 * w) + bn(64 * w);
  let cin = 64 * w;
  for (let g = 0; g < 4; g++) {
    const c = 64 * 2 ** g * w;
    for (let b = 0; b < 2; b++) {
      n += conv(3, cin, c) + bn(c) + conv(3, c, c) + bn(c);
      if (cin !== c) n += conv(1, cin, c) + bn(c);
      cin = c;
    }
  }
  return n;
}

test('ResNet parameter counts equal torchvision\'s (without the classifier) and the closed form', () => {
  const table: [string, tfl.LayersModel, number][] = [
    ['resnet18', resnet({ depth: 18, stem: 'imagenet', inputShape: [224, 224, 3] }), 11_176_512],
    ['resnet18-cifar', resnet({ depth: 18, stem: 'cifar', inputShape: [32, 32, 3] }), 11_168_832],
    ['resnet50', resnet({ depth: 50, stem: 'imagenet', inputShape: [224, 224, 3] }), 23_508_032],
    ['resnet18 ×2', resnet({ depth: 18, stem: 'imagenet', width: 2, inputShape: [64, 64, 3] }), resnet18Params(2, 'imagenet')],
  ];
  assert.equal(resnet18Params(1, 'imagenet'), 11_176_512);
  for (const [name, model, expected] of table) {
    assert.equal(trainableCount(model), expected, name);
    model.dispose();
  }
});

test('ResNet outputs one feature vector per image: 512·w (basic) or 2048·w (bottleneck)', async () => {
  const cases: [tfl.LayersModel, number[], number][] = [
    [resnet({ depth: 18, stem: 'cifar', inputShape: [16, 16, 3] }), [2, 16, 16, 3], resnetFeatureDim(18)],
    [resnet({ depth: 50, stem: 'imagenet', inputShape: [32, 32, 3] }), [2, 32, 32, 3], resnetFeatureDim(50)],
  ];
  assert.equal(resnetFeatureDim(18, 2), 1024);
  for (const [model, shape, dim] of cases) {
    const x = tf.randomUniform(shape);
    await assertNoLeak(() => {
      const y = model.apply(x, { training: true }) as tf.Tensor;
      assert.deepEqual(y.shape, [2, dim]);
      assert.ok(y.dataSync().every(Number.isFinite));
      y.dispose();
    }, 'forward');
    x.dispose();
    model.dispose();
  }
});

test('ResNet-50 zero-initializes the last batch-norm scale of each bottleneck block, as Haiku does', () => {
  const m = resnet({ depth: 50, stem: 'imagenet', inputShape: [64, 64, 3] });
  const gammas = m.trainableWeights.filter((w) => w.name.includes('gamma'));
  const zero = gammas.filter((w) => w.read().dataSync().every((v) => v === 0));
  assert.equal(zero.length, 16, 'one per bottleneck block (3 + 4 + 6 + 3)');
  m.dispose();
});

test('ResNet refuses a non-integer width with a typed error', () => {
  assert.throws(() => resnet({ depth: 18, stem: 'cifar', width: 1.5, inputShape: [32, 32, 3] }), (e: unknown) => e instanceof ByolError && e.option === 'width');
});

test('weights start truncated-normal with variance 1/fan_in (Haiku default), and a seed makes them reproducible', () => {
  const a = resnet({ depth: 18, stem: 'cifar', inputShape: [32, 32, 3], seed: 5 });
  const b = resnet({ depth: 18, stem: 'cifar', inputShape: [32, 32, 3], seed: 5 });
  const c = resnet({ depth: 18, stem: 'cifar', inputShape: [32, 32, 3], seed: 6 });
  // The 3×3×256×256 kernels: fan_in 2304.
  const k = (m: tfl.LayersModel) => m.trainableWeights.find((w) => w.shape.join() === '3,3,256,256')!.read();
  const values = Array.from(k(a).dataSync());
  const std = Math.sqrt(values.reduce((s, v) => s + v * v, 0) / values.length);
  assert.ok(Math.abs(std - 1 / Math.sqrt(2304)) < 0.02 / Math.sqrt(2304), `std ${std}`);
  assert.ok(values.reduce((m, v) => Math.max(m, Math.abs(v)), 0) <= (2 * 1.001) / 0.8796 / Math.sqrt(2304), 'truncated at 2 stddev');
  assert.deepEqual(Array.from(k(b).dataSync()), values);
  assert.notDeepEqual(Array.from(k(c).dataSync().slice(0, 16)), values.slice(0, 16));
  [a, b, c].forEach((m) => m.dispose());
});

test('ConvNet maps 28×28 grey images to 128 features with about 93 k weights', () => {
  const m = convNet();
  assert.equal(trainableCount(m), 92_896);
  const y = m.apply(tf.zeros([3, 28, 28, 1]), { training: false }) as tf.Tensor;
  assert.deepEqual(y.shape, [3, 128]);
  m.dispose();
});

test('MLP head is Linear(bias) → BatchNorm → ReLU → Linear(no bias) with the paper\'s sizes', () => {
  const h = mlpHead({ inputDim: 512, hiddenDim: 4096, outputDim: 256 });
  assert.deepEqual(h.layers.map((l) => l.getClassName()), ['Dense', 'BatchNormalization', 'ReLU', 'Dense']);
  assert.equal(trainableCount(h), 512 * 4096 + 4096 + 2 * 4096 + 4096 * 256);
  const bn = h.layers[1]!.getConfig();
  assert.equal(bn['momentum'], 0.9);
  assert.equal(bn['epsilon'], 1e-5);
  h.dispose();
});

test('a target cloned from a LayersModel gets byol\'s batch-norm layer; the stock registry entry is left as it was', () => {
  const model = tfl.sequential({ layers: [tfl.layers.dense({ inputShape: [4], units: 3 }), tfl.layers.batchNormalization({})] });
  const clone = cloneArchitecture(model);
  assert.equal(clone.layers[1]!.constructor, fusedBatchNormClass());
  assert.equal(clone.layers[1]!.getClassName(), 'BatchNormalization');
  const again = tfl.layers.batchNormalization({});
  assert.notEqual(again.constructor, fusedBatchNormClass());
  model.dispose();
  clone.dispose();
});

test('byol\'s Conv2D layer: the stock layer\'s outputs and gradients, without the unused gradient with respect to the images; saves and clones as Conv2D', async () => {
  await useBackend('cpu');
  const args = { inputShape: [9, 9, 3], filters: 4, kernelSize: 3, strides: 2, padding: 'same' as const, useBias: false, kernelInitializer: 'glorotNormal' as const };
  const lean = tfl.sequential({ layers: [new (leanConv2dClass())(args)] });
  const stock = tfl.sequential({ layers: [tfl.layers.conv2d(args)] });
  stock.setWeights(lean.getWeights());
  const x = tf.randomNormal([2, 9, 9, 3], 0, 1, 'float32', 7);
  const run = async (m: tfl.LayersModel) => {
    const w = m.trainableWeights[0]!.read() as tf.Variable;
    const f = () => tf.sum(tf.square(m.apply(x, { training: true }) as tf.Tensor)) as tf.Scalar;
    let out: number[][] = [];
    const profile = await tf.profile(() => {
      const { value, grads } = tf.variableGrads(f, [w]);
      out = [Array.from(value.dataSync()), Array.from(grads[w.name]!.dataSync())];
      tf.dispose([value, grads[w.name]!]);
    });
    return { out, kernels: profile.kernels.map((k) => k.name) };
  };
  const a = await run(lean);
  const b = await run(stock);
  assert.deepEqual(a.out, b.out, 'same loss and filter gradient');
  assert.ok(b.kernels.includes('Conv2DBackpropInput'), 'the stock fused convolution computes the images\' gradient');
  assert.ok(!a.kernels.includes('Conv2DBackpropInput') && a.kernels.includes('Conv2DBackpropFilter'), 'byol\'s does not');
  assert.equal(lean.layers[0]!.getClassName(), 'Conv2D');
  // With a bias it is the stock path (and the same numbers).
  const biased = new (leanConv2dClass())({ ...args, useBias: true });
  assert.ok(biased.apply(tf.zeros([1, 9, 9, 3])) instanceof tf.Tensor);
  // Built-in encoders use it, and a rebuilt copy (a target, a resumed run) does too.
  const net = resnet({ depth: 18, stem: 'cifar', inputShape: [8, 8, 3] });
  const copy = cloneArchitecture(net);
  for (const m of [net, copy]) assert.ok(m.layers.filter((l) => l.getClassName() === 'Conv2D').every((l) => l instanceof leanConv2dClass()));
  assert.equal(tfl.layers.conv2d(args).constructor === leanConv2dClass(), false, 'the stock registry entry is left as it was');
  tf.dispose(x);
  [lean, stock, net, copy].forEach((m) => m.dispose());
  biased.dispose();
});

test('weights start as Haiku draws them: a normal truncated at 2σ with variance 1/fan_in (not tfjs\'s uniform)', async () => {
  const { fanInTruncatedNormal, SeedStream, TRUNCATED_NORMAL_STD } = await import('../src/nets/init.js');
  // A 3×3×64×128 kernel: fan_in 576, 73 728 draws.
  const w = tf.tidy(() => fanInTruncatedNormal(new SeedStream(7)).apply([3, 3, 64, 128], 'float32').dataSync() as Float32Array);
  const n = w.length;
  const mean = w.reduce((s, x) => s + x, 0) / n;
  const variance = w.reduce((s, x) => s + (x - mean) ** 2, 0) / n;
  const sigma = Math.sqrt(1 / 576) / TRUNCATED_NORMAL_STD; // the normal's σ before truncation
  assert.ok(Math.abs(mean) < 0.01 * sigma, `mean ${mean}`);
  assert.ok(Math.abs(variance * 576 - 1) < 0.02, `variance × fan_in = ${variance * 576}`);
  assert.ok(w.every((x) => Math.abs(x) <= 2 * sigma * (1 + 1e-6)), 'nothing beyond 2σ');
  // A normal truncated to ±2σ holds 68.27 % / 95.45 % = 71.5 % of its mass within ±σ; a uniform of the same
  // variance (tfjs's 'truncatedNormal') would hold 66 % there (its limit is 1.52σ).
  const within = w.filter((x) => Math.abs(x) < sigma).length / n;
  assert.ok(Math.abs(within - 0.6827 / 0.9545) < 0.01, `mass within σ: ${within}`);
  // The config is the stock VarianceScaling's, so saved models load in plain tfjs.
  const cfg = fanInTruncatedNormal(new SeedStream(1)).getConfig();
  assert.equal(cfg['distribution'], 'normal');
  assert.ok(Math.abs((cfg['scale'] as number) - 1.2924212) < 1e-6);
});
