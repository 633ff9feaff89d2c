import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { Byol, ByolError, type ByolOptions, type EncoderFunction } from '../src/index.js';
import { assertClose, assertNoLeak, assertTensorClose, reference, tensorOf, type Arr } from './helpers.js';

/** A tiny user encoder: flatten → Dense(8, relu). */
const mlpEncoder = (shape: [number, number, number], units = 8) =>
  tfl.sequential({ layers: [tfl.layers.flatten({ inputShape: shape }), tfl.layers.dense({ units, activation: 'relu' })] });

const tiny: Omit<ByolOptions, 'encoder'> = {
  batchSize: 8,
  totalSteps: 20,
  projector: { hiddenDim: 32, outputDim: 16 },
  predictor: { hiddenDim: 32 },
  seed: 3,
};

const snapshot = (vs: readonly tf.Variable[]) => vs.map((v) => Array.from(v.dataSync()));

function views(seed: number, shape: [number, number, number, number] = [8, 4, 4, 3]): [tf.Tensor4D, tf.Tensor4D] {
  return tf.tidy(() => {
    const x = tf.randomUniform(shape, 0, 1, 'float32', seed) as tf.Tensor4D;
    return [x, tf.add(tf.reverse(x, 2), tf.randomNormal(shape, 0, 0.05, 'float32', seed + 1)) as tf.Tensor4D];
  });
}

test('three BYOL steps on a user LayersModel match the PyTorch reference: losses, τ, lr, online and target weights, BN statistics', async () => {
  const F = reference.fullStep;
  const learner = new Byol({
    encoder: mlpEncoder(F.inputShape, F.featureDim),
    batchSize: F.batchSize,
    totalSteps: F.totalSteps,
    warmupSteps: F.warmupSteps,
    baseLearningRate: F.baseLearningRate,
    tau: F.tau,
    weightDecay: F.weightDecay,
    momentum: F.momentum,
    larsEta: F.larsEta,
    projector: { hiddenDim: F.hiddenDim, outputDim: F.outputDim },
    predictor: { hiddenDim: F.hiddenDim },
  });
  // Start from the reference's weights; the target starts as their copy (targetInit 'copy').
  F.initialOnline.forEach((a: Arr, i: number) => learner.onlineWeights[i]!.assign(tensorOf(a)));
  learner.targetWeights.forEach((v, i) => v.assign(learner.onlineWeights[i]!));
  for (let k = 0; k < 3; k++) {
    const [v1, v2] = F.views[k].map(tensorOf);
    const r = await learner.step(v1, v2);
    assertClose(r.loss, F.losses[k], 1e-5, 1e-5, `loss ${k}`);
    assertClose(r.tau, F.taus[k], 1e-12, 0, `tau ${k}`);
    assertClose(r.learningRate, F.lrs[k], 1e-12, 0, `lr ${k}`);
    assert.equal(r.step, k + 1);
    tf.dispose([v1, v2]);
  }
  learner.onlineWeights.forEach((v, i) => assertTensorClose(v, F.online[i], 2e-5, 1e-4, `online weight ${i}`));
  learner.targetWeights.forEach((v, i) => assertTensorClose(v, F.target[i], 2e-5, 1e-4, `target weight ${i}`));
  learner.onlineState.forEach((v, i) => assertTensorClose(v, F.onlineState[i], 2e-5, 1e-4, `online BN state ${i}`));
  learner.targetState.forEach((v, i) => assertTensorClose(v, F.targetState[i], 2e-5, 1e-4, `target BN state ${i}`));
  learner.dispose();
});

test('the target gets no gradient: with τ = 0.5 it is exactly ½ old target + ½ new online after a step', async () => {
  const learner = new Byol({ ...tiny, encoder: { name: 'convnet', inputShape: [4, 4, 3] }, tau: 0.5, tauSchedule: 'constant', targetInit: 'independent' });
  const [v1, v2] = views(1);
  const oldTarget = learner.targetWeights.map((v) => v.clone());
  const oldOnline = snapshot(learner.onlineWeights);
  await learner.step(v1, v2);
  const newOnline = learner.onlineWeights;
  assert.ok(newOnline.some((v, i) => v.dataSync().some((x, j) => x !== oldOnline[i]![j])), 'the optimizer moved the online weights');
  learner.targetWeights.forEach((t, i) => {
    const expected = tf.add(tf.mul(oldTarget[i]!, 0.5), tf.mul(newOnline[i]!, 0.5));
    assertClose(t.dataSync(), expected.dataSync(), 1e-7, 1e-6, `target ${i}`);
    expected.dispose();
  });
  tf.dispose([...oldTarget, v1, v2]);
  learner.dispose();
});

test('τ = 1: the target never changes (a fixed random target); the online network does', async () => {
  const learner = new Byol({ ...tiny, encoder: { name: 'convnet', inputShape: [4, 4, 3] }, tau: 1, targetInit: 'independent' });
  const target0 = snapshot(learner.targetWeights);
  const online0 = snapshot(learner.onlineWeights);
  for (let s = 0; s < 3; s++) {
    const [v1, v2] = views(10 + s);
    const r = await learner.step(v1, v2);
    assert.equal(r.tau, 1);
    tf.dispose([v1, v2]);
  }
  assert.deepEqual(snapshot(learner.targetWeights), target0);
  assert.notDeepEqual(snapshot(learner.onlineWeights), online0);
  learner.dispose();
});

test('τ = 0: the target equals the online network after every step', async () => {
  const learner = new Byol({ ...tiny, encoder: { name: 'convnet', inputShape: [4, 4, 3] }, tau: 0, tauSchedule: 'constant', targetInit: 'independent' });
  const n = learner.targetWeights.length;
  for (let s = 0; s < 3; s++) {
    const [v1, v2] = views(20 + s);
    await learner.step(v1, v2);
    assert.deepEqual(snapshot(learner.targetWeights), snapshot(learner.onlineWeights.slice(0, n)));
    tf.dispose([v1, v2]);
  }
  learner.dispose();
});

test('the target starts as a copy of the online network by default, and independently on request', () => {
  const copy = new Byol({ ...tiny, encoder: { name: 'convnet', inputShape: [4, 4, 3] } });
  const n = copy.targetWeights.length;
  assert.deepEqual(snapshot(copy.targetWeights), snapshot(copy.onlineWeights.slice(0, n)));
  assert.deepEqual(snapshot(copy.targetState), snapshot(copy.onlineState.slice(0, copy.targetState.length)));
  const indep = new Byol({ ...tiny, encoder: { name: 'convnet', inputShape: [4, 4, 3] }, targetInit: 'independent' });
  assert.notDeepEqual(snapshot(indep.targetWeights.slice(0, 1)), snapshot(indep.onlineWeights.slice(0, 1)));
  copy.dispose();
  indep.dispose();
});

test('20 steps on a tiny encoder lower the loss, and a step leaks no tensors', async () => {
  const learner = new Byol({ ...tiny, encoder: { name: 'convnet', inputShape: [4, 4, 3] }, baseLearningRate: 2, warmupSteps: 2 });
  const [v1, v2] = views(5);
  const losses: number[] = [];
  for (let s = 0; s < 20; s++) {
    if (s === 10) await assertNoLeak(async () => losses.push((await learner.step(v1, v2)).loss), 'step');
    else losses.push((await learner.step(v1, v2)).loss);
  }
  const first = (losses[0]! + losses[1]!) / 2;
  const last = (losses[18]! + losses[19]!) / 2;
  assert.ok(last < 0.7 * first, `loss ${first.toFixed(3)} → ${last.toFixed(3)}`);
  assert.ok(losses.every(Number.isFinite));
  tf.dispose([v1, v2]);
  learner.dispose();
});

test('a functional-API LayersModel is cloned for the target; embed() gives features in inference mode without leaks', async () => {
  const input = tfl.input({ shape: [4, 4, 3] });
  const conv = tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu' }).apply(input) as tfl.SymbolicTensor;
  const pooled = tfl.layers.globalAveragePooling2d({}).apply(conv) as tfl.SymbolicTensor;
  const model = tfl.model({ inputs: input, outputs: pooled });
  const learner = new Byol({ ...tiny, encoder: model });
  assert.equal(learner.featureDim, 4);
  assert.equal(learner.encoder, model);
  assert.notEqual(learner.targetEncoder, model);
  const [v1, v2] = views(7);
  await assertNoLeak(() => learner.step(v1, v2), 'step');
  await assertNoLeak(() => learner.embed(v1).dispose(), 'embed');
  const f = learner.embed(v1);
  assert.deepEqual(f.shape, [8, 4]);
  tf.dispose([f, v1, v2]);
  learner.dispose();
});

test('a function encoder (own variables, factory called per network) trains', async () => {
  const make = (): EncoderFunction => {
    const w = tf.variable(tf.randomNormal([48, 6], 0, 0.2, 'float32', 11));
    return {
      apply: (x) => tf.relu(tf.matMul(tf.reshape(x, [x.shape[0], 48]), w)) as tf.Tensor2D,
      variables: [w],
      featureDim: 6,
      inputShape: [4, 4, 3],
    };
  };
  const learner = new Byol({ ...tiny, encoder: make, baseLearningRate: 1 });
  const [v1, v2] = views(8);
  const before = snapshot(learner.onlineWeights.slice(0, 1));
  await assertNoLeak(() => learner.step(v1, v2), 'step');
  assert.notDeepEqual(snapshot(learner.onlineWeights.slice(0, 1)), before);
  tf.dispose([v1, v2]);
  learner.dispose();
});

test('ablation switches run: no predictor, SimSiam mode, in-batch negatives (β > 0), SGD and AdamW', async () => {
  const variants: Partial<ByolOptions>[] = [
    { predictor: false },
    { mode: 'simsiam' },
    { beta: 1, temperature: 0.2 },
    { optimizer: 'sgd', nesterov: true },
    { optimizer: 'adamw' },
  ];
  const [v1, v2] = views(9);
  for (const v of variants) {
    const learner = new Byol({ ...tiny, encoder: { name: 'convnet', inputShape: [4, 4, 3] }, ...v });
    const r1 = await learner.step(v1, v2);
    const before = tf.memory().numTensors;
    const r2 = await learner.step(v1, v2);
    assert.equal(tf.memory().numTensors, before, `${JSON.stringify(v)} leaked`);
    assert.ok(Number.isFinite(r1.loss) && Number.isFinite(r2.loss), JSON.stringify(v));
    if (v.mode === 'simsiam') assert.equal(learner.targetWeights.length, 0);
    if (v.beta) assert.ok(r1.loss > 4, 'the negatives term adds to the loss');
    learner.dispose();
  }
  tf.dispose([v1, v2]);
});

test('saving and restoring the training state (weights, optimizer, step) continues exactly', async () => {
  const opts: ByolOptions = { ...tiny, encoder: { name: 'convnet', inputShape: [4, 4, 3] }, optimizer: 'lars' };
  const a = new Byol(opts);
  const b = new Byol({ ...opts, seed: 99 });
  const [v1, v2] = views(12);
  await a.step(v1, v2);
  await a.step(v2, v1);
  const state = await a.getTrainingState();
  const copy = (from: readonly tf.Variable[], to: readonly tf.Variable[]) => to.forEach((v, i) => v.assign(from[i]!));
  copy(a.onlineWeights, b.onlineWeights);
  copy(a.targetWeights, b.targetWeights);
  copy(a.onlineState, b.onlineState);
  copy(a.targetState, b.targetState);
  b.setTrainingState(state);
  assert.equal(b.stepCount, 2);
  const ra = await a.step(v1, v2);
  const rb = await b.step(v1, v2);
  assert.deepEqual(rb, ra);
  assert.deepEqual(snapshot(b.targetWeights), snapshot(a.targetWeights));
  assert.throws(() => b.setTrainingState({ ...state, step: -1 }), (e: unknown) => e instanceof ByolError && e.code === 'INVALID_STATE');
  tf.dispose([v1, v2]);
  a.dispose();
  b.dispose();
});

test('constructing, training and disposing a learner leaves no tensor behind', async () => {
  const before = tf.memory().numTensors;
  for (const v of [{}, { optimizer: 'adamw' as const }, { mode: 'simsiam' as const }]) {
    const learner = new Byol({ ...tiny, encoder: { name: 'convnet', inputShape: [4, 4, 3] }, ...v });
    const [v1, v2] = views(13);
    await learner.step(v1, v2);
    tf.dispose([v1, v2]);
    learner.dispose();
  }
  assert.equal(tf.memory().numTensors, before);
});

test('bad views give typed errors naming the argument', async () => {
  const learner = new Byol({ ...tiny, encoder: { name: 'convnet', inputShape: [4, 4, 3] } });
  const good = tf.zeros([8, 4, 4, 3]);
  const cases: [tf.Tensor, tf.Tensor, string][] = [
    [tf.zeros([1, 4, 4, 3]), tf.zeros([1, 4, 4, 3]), 'view1'],
    [tf.zeros([8, 48]), good, 'view1'],
    [good, tf.zeros([8, 4, 4, 1]), 'view2'],
    [tf.zeros([8, 5, 5, 3]), tf.zeros([8, 5, 5, 3]), 'view1'],
    [tf.zeros([8, 4, 4, 3], 'int32'), good, 'view1'],
  ];
  for (const [a, b, arg] of cases) {
    await assert.rejects(learner.step(a, b), (e: unknown) => e instanceof ByolError && e.code === 'INVALID_INPUT' && e.option === arg, `${a.shape} / ${b.shape}`);
  }
  learner.dispose();
  await assert.rejects(learner.step(good, good), (e: unknown) => e instanceof ByolError && e.code === 'INVALID_STATE');
});
