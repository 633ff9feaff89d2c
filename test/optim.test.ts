import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { AdamW, ByolError, Lars, Sgd, copyVariables, emaUpdate, isBiasOrNorm, type Optimizer } from '../src/index.js';
import { assertNoLeak, assertTensorClose, reference, tensorOf, type Arr } from './helpers.js';

const variables = (arrs: Arr[]) => arrs.map((a) => tf.variable(tensorOf(a)));

test('EMA update ξ ← τξ + (1−τ)θ matches the reference', () => {
  const E = reference.ema;
  const target = variables(E.target);
  const online = variables(E.online);
  emaUpdate(target, online, E.tau);
  target.forEach((v, i) => assertTensorClose(v, E.expected[i], 1e-6, 1e-6, `target[${i}]`));
  tf.dispose([...target, ...online]);
});

test('EMA with τ = 1 leaves the target bit-identical; τ = 0 makes it equal the online weights', () => {
  const E = reference.ema;
  const target = variables(E.target);
  const online = variables(E.online);
  const before = target.map((v) => Array.from(v.dataSync()));
  emaUpdate(target, online, 1);
  target.forEach((v, i) => assert.deepEqual(Array.from(v.dataSync()), before[i]));
  emaUpdate(target, online, 0);
  target.forEach((v, i) => assert.deepEqual(Array.from(v.dataSync()), Array.from(online[i]!.dataSync())));
  tf.dispose([...target, ...online]);
});

test('EMA and copy refuse mismatched networks', () => {
  const a = [tf.variable(tf.zeros([2, 2]))];
  const b = [tf.variable(tf.zeros([2, 3]))];
  assert.throws(() => emaUpdate(a, b, 0.5), (e: unknown) => e instanceof ByolError && e.code === 'INVALID_STATE');
  assert.throws(() => copyVariables(a, []), (e: unknown) => e instanceof ByolError && e.code === 'INVALID_STATE');
  tf.dispose([...a, ...b]);
});

test('biases and norm parameters (1-D) are the excluded ones', () => {
  const vs = [tf.variable(tf.zeros([3])), tf.variable(tf.zeros([3, 3])), tf.variable(tf.zeros([1, 1, 3, 4]))];
  assert.deepEqual(vs.map(isBiasOrNorm), [true, false, false]);
  tf.dispose(vs);
});

/** Runs the optimizer over the fixture's gradient steps and compares parameters after each step. */
function runSteps(opt: Optimizer, F: { grads: Arr[][]; lrs: number[] }, check: (step: number) => void) {
  F.grads.forEach((gs, s) => {
    const grads = gs.map(tensorOf);
    opt.apply(grads, F.lrs[s]!);
    tf.dispose(grads);
    check(s);
  });
}

test('LARS steps (decay and trust ratio skipped for 1-D params, zero-norm fallback) match the reference', async () => {
  const F = reference.lars;
  const params = variables(F.params);
  const opt = new Lars(params, { momentum: F.momentum, weightDecay: F.weightDecay, eta: F.eta });
  // Start from the fixture's non-zero momentum, set through the public state API.
  opt.setState({ kind: 'lars', updates: 0, slots: { mu: F.mu.map((a: Arr) => Float32Array.from(a.data)) } });
  runSteps(opt, F, (s) => {
    params.forEach((p, i) => assertTensorClose(p, F.expected[s].params[i], 1e-6, 1e-5, `step ${s} param ${i}`));
  });
  const state = await opt.getState();
  state.slots['mu']!.forEach((m, i) => assertTensorClose(tf.tensor(m, params[i]!.shape), F.expected[1].mu[i], 1e-6, 1e-5, `mu ${i}`));
  opt.dispose();
  tf.dispose(params);
});

test('AdamW steps match torch.optim.AdamW (no decay on 1-D params)', () => {
  const F = reference.adamw;
  const params = variables(F.params);
  const opt = new AdamW(params, { beta1: F.beta1, beta2: F.beta2, epsilon: F.epsilon, weightDecay: F.weightDecay });
  runSteps(opt, F, (s) => params.forEach((p, i) => assertTensorClose(p, F.expected[s][i], 1e-6, 1e-5, `step ${s} param ${i}`)));
  opt.dispose();
  tf.dispose(params);
});

test('SGD with momentum matches torch.optim.SGD (no decay on 1-D params)', () => {
  const F = reference.sgd;
  const params = variables(F.params);
  const opt = new Sgd(params, { momentum: F.momentum, weightDecay: F.weightDecay, nesterov: F.nesterov });
  runSteps(opt, F, (s) => params.forEach((p, i) => assertTensorClose(p, F.expected[s][i], 1e-6, 1e-5, `step ${s} param ${i}`)));
  opt.dispose();
  tf.dispose(params);
});

for (const kind of ['lars', 'sgd', 'adamw'] as const) {
  test(`${kind}: saving and restoring the state continues bit-exactly, and a step leaks nothing`, async () => {
    const F = reference.adamw;
    const make = (ps: tf.Variable[]): Optimizer =>
      kind === 'lars'
        ? new Lars(ps, { momentum: 0.9, weightDecay: 0.01, eta: 0.001 })
        : kind === 'sgd'
          ? new Sgd(ps, { momentum: 0.9, weightDecay: 0.01, nesterov: true })
          : new AdamW(ps, { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.01 });
    const a = variables(F.params);
    const optA = make(a);
    const grads = F.grads.map((gs: Arr[]) => gs.map(tensorOf));
    optA.apply(grads[0], 0.1);
    // Snapshot after one step; B resumes from it.
    const saved = await optA.getState();
    const b = a.map((v) => tf.variable(v.clone()));
    const optB = make(b);
    optB.setState(saved);
    await assertNoLeak(() => optA.apply(grads[1], 0.05), `${kind} step`);
    optB.apply(grads[1], 0.05);
    a.forEach((v, i) => assert.deepEqual(Array.from(b[i]!.dataSync()), Array.from(v.dataSync()), `param ${i}`));
    assert.throws(() => optB.setState({ ...saved, kind: 'other' }), (e: unknown) => e instanceof ByolError && e.code === 'INVALID_STATE');
    assert.throws(
      () => optB.setState({ ...saved, slots: Object.fromEntries(Object.keys(saved.slots).map((k) => [k, []])) }),
      (e: unknown) => e instanceof ByolError && e.code === 'INVALID_STATE',
    );
    optA.dispose();
    optB.dispose();
    tf.dispose([...a, ...b, ...grads.flat()]);
  });
}
