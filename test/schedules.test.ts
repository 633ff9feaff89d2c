import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ByolError, learningRateAt, targetTau } from '../src/index.js';
import { assertClose, reference } from './helpers.js';

test('cosine τ schedule matches the reference table', () => {
  for (const r of reference.tau) {
    assertClose(targetTau(r.step, r.total, r.base), r.tau, 1e-12, 0, `tau(${r.step}/${r.total}, ${r.base})`);
  }
});

test('τ starts at τ_base, ends at 1, stays at 1 past the end; constant stays at τ_base', () => {
  assert.equal(targetTau(0, 100, 0.996), 0.996);
  assert.equal(targetTau(100, 100, 0.996), 1);
  assert.equal(targetTau(250, 100, 0.996), 1);
  assert.equal(targetTau(50, 100, 0.5, 'constant'), 0.5);
  assert.equal(targetTau(0, 100, 1), 1);
});

test('τ outside [0, 1] is refused with a typed error', () => {
  assert.throws(() => targetTau(0, 10, 1.5), (e: unknown) => e instanceof ByolError && e.code === 'INVALID_OPTION' && e.option === 'tau');
});

test('learning-rate schedule (linear warm-up, cosine to 0, scaled by batch/256) matches the reference', () => {
  for (const r of reference.learningRate) {
    const got = learningRateAt(r.step, { base: r.base, batchSize: r.batchSize, warmupSteps: r.warmupSteps, totalSteps: r.totalSteps });
    assertClose(got, r.lr, 1e-12, 1e-12, `lr(step ${r.step}, warmup ${r.warmupSteps}, total ${r.totalSteps})`);
  }
});

test('learning rate peaks at base × batch / 256 right after warm-up', () => {
  assert.equal(learningRateAt(10, { base: 0.2, batchSize: 4096, warmupSteps: 10, totalSteps: 1000 }), 3.2);
});
