/**
 * leanVariableGrads (src/train/gradients.ts): tfjs's gradients, bit for bit, with memory released during the
 * backward pass.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { nodesBetween, leanVariableGrads } from '../src/train/gradients.js';
import { resnet } from '../src/nets/resnet.js';
import { useBackend } from '../src/node.js';

const rand = (shape: number[], seed: number) => tf.randomNormal(shape, 0, 1, 'float32', seed);

test('leanVariableGrads gives exactly tf.variableGrads: a ResNet in training mode (batch norm, residual sums), unused and repeated variables; nothing leaks', async () => {
  await useBackend('cpu');
  const model = resnet({ depth: 18, stem: 'cifar', inputShape: [8, 8, 3], seed: 3 });
  const x = rand([4, 8, 8, 3], 1);
  const w = rand([4, 512], 2);
  const extra = tf.variable(rand([512], 3), true, 'lean-extra');
  const unused = tf.variable(rand([3], 4), true, 'lean-unused');
  const vars = [...model.trainableWeights.map((v) => v.read() as tf.Variable), extra, unused];
  // The extra weight is used twice (its gradient accumulates); the unused one gets none.
  const f = () => tf.sum(tf.mul(tf.add(tf.mul(model.apply(x, { training: true }) as tf.Tensor, w), tf.mul(extra, extra)), extra)) as tf.Scalar;
  const moving = () => model.getWeights().filter((_, i) => !model.weights[i]!.trainable).map((t) => t.dataSync().slice());
  const start = moving();
  const run = (grads: typeof leanVariableGrads) => {
    model.weights.filter((v) => !v.trainable).forEach((v, i) => v.write(tf.tensor(start[i]!, v.shape as number[])));
    const before = tf.memory().numTensors;
    const { value, grads: g } = grads(f, vars);
    const out = { value: value.dataSync()[0], names: Object.keys(g).sort(), data: vars.map((v) => (g[v.name] ? Array.from(g[v.name]!.dataSync()) : null)) };
    tf.dispose([value, ...Object.values(g)]);
    return { out, left: tf.memory().numTensors - before };
  };
  const stock = run((fn, vs) => tf.variableGrads(fn, vs as tf.Variable[]));
  const lean = run(leanVariableGrads);
  assert.equal(lean.left, stock.left, 'no more tensors left behind than tf.variableGrads leaves (the moving statistics written)');
  assert.equal(lean.out.value, stock.out.value);
  assert.deepEqual(lean.out.names, stock.out.names);
  assert.ok(!lean.out.names.includes('lean-unused'), 'an unused variable gets no gradient');
  lean.out.data.forEach((d, i) => assert.deepEqual(d, stock.out.data[i], `gradient ${i} differs`));
  tf.dispose([x, w, extra, unused]);
  model.dispose();
});

test('leanVariableGrads releases what a node saved once its gradient is taken: fewer buffers live late in the backward pass', async () => {
  await useBackend('cpu');
  const v = tf.variable(rand([64, 64], 5), true, 'lean-chain');
  // A probe at the start of a long chain: its gradient runs last, and counts the data buffers alive then.
  let seen = 0;
  const probe = tf.customGrad((a) => ({
    value: tf.clone(a as tf.Tensor),
    gradFunc: (dy: tf.Tensor) => {
      seen = (tf.engine() as unknown as { state: { numDataBuffers: number } }).state.numDataBuffers;
      return dy;
    },
  }));
  const f = () => {
    let h = probe(v) as tf.Tensor;
    for (let i = 0; i < 30; i++) h = tf.relu(tf.matMul(h, v));
    return tf.mean(h) as tf.Scalar;
  };
  const count = (grads: typeof leanVariableGrads) => {
    const { value, grads: g } = grads(f, [v]);
    tf.dispose([value, ...Object.values(g)]);
    return seen;
  };
  const stock = count((fn, vs) => tf.variableGrads(fn, vs as tf.Variable[]));
  const lean = count(leanVariableGrads);
  // Stock holds the 60 saved activations and 60 gradients of the chain at that point; lean a handful.
  assert.ok(lean + 50 < stock, `buffers alive at the end of the backward pass: lean ${lean}, stock ${stock}`);
  v.dispose();
});

test('nodesBetween keeps the nodes on a path from xs to y, each with only the inputs that depend on xs', () => {
  const t = (id: number) => ({ id }) as unknown as tf.Tensor;
  const node = (id: number, inputs: Record<string, number>, outputs: number[]) => ({ id, kernelName: `k${id}`, inputs: Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, t(v)])), outputs: outputs.map(t) });
  // x=1, c=2 (a constant). n1: a = x·c; n2: b = c + c (no x); n3: y = a + b; n4: z = a·a (does not lead to y).
  const tape = [node(1, { a: 1, b: 2 }, [3]), node(2, { a: 2, b: 2 }, [4]), node(3, { a: 3, b: 4 }, [5]), node(4, { a: 3, b: 3 }, [6])];
  const kept = nodesBetween(tape, [t(1)], t(5));
  assert.deepEqual(kept.map((n) => n.id), [1, 3]);
  assert.deepEqual(Object.keys(kept[0]!.inputs), ['a']);
  assert.deepEqual(Object.keys(kept[1]!.inputs), ['a']);
});
