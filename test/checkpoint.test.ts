import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { Byol, ByolError, loadCheckpoint, saveCheckpoint, type ByolOptions } from '../src/node.js';

const opts: ByolOptions = {
  encoder: { name: 'convnet', inputShape: [4, 4, 3] },
  batchSize: 6,
  totalSteps: 20,
  projector: { hiddenDim: 16, outputDim: 8 },
  predictor: { hiddenDim: 16 },
  seed: 1,
};
const batch = (k: number) => tf.tidy(() => [tf.randomUniform([6, 4, 4, 3], 0, 1, 'float32', k), tf.randomUniform([6, 4, 4, 3], 0, 1, 'float32', k + 100)] as const);

for (const optimizer of ['lars', 'adamw'] as const) {
  test(`${optimizer}: a run resumed from a checkpoint file continues with exactly the losses of an uninterrupted run`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'byol-ckpt-'));
    try {
      const straight = new Byol({ ...opts, optimizer });
      const losses: number[] = [];
      for (let k = 0; k < 5; k++) {
        const [a, b] = batch(k);
        losses.push((await straight.step(a, b)).loss);
        tf.dispose([a, b]);
        if (k === 1) await saveCheckpoint(join(dir, 'ckpt.bin'), await straight.getState(), { note: 'after step 2' });
      }
      straight.dispose();
      // A fresh learner with other initial weights picks up the run.
      const resumed = new Byol({ ...opts, optimizer, seed: 42 });
      const { state, meta } = await loadCheckpoint(join(dir, 'ckpt.bin'));
      assert.deepEqual(meta, { note: 'after step 2' });
      resumed.setState(state);
      assert.equal(resumed.stepCount, 2);
      for (let k = 2; k < 5; k++) {
        const [a, b] = batch(k);
        assert.equal((await resumed.step(a, b)).loss, losses[k], `step ${k + 1}`);
        tf.dispose([a, b]);
      }
      resumed.dispose();
      assert.deepEqual(readdirSync(dir), ['ckpt.bin'], 'no temporary file left');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('checkpoint faults: another architecture, a truncated file, a foreign file — each named, nothing changed', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'byol-ckpt-'));
  try {
    const a = new Byol(opts);
    const path = join(dir, 'a.bin');
    await saveCheckpoint(path, await a.getState());
    const other = new Byol({ ...opts, projector: { hiddenDim: 32, outputDim: 8 } });
    const before = (await other.getState()).tensors.onlineWeights.map((x) => Array.from(x));
    const { state } = await loadCheckpoint(path);
    assert.throws(() => other.setState(state), (e: unknown) => e instanceof ByolError && e.code === 'INVALID_STATE' && /another architecture/.test((e as Error).message));
    assert.deepEqual((await other.getState()).tensors.onlineWeights.map((x) => Array.from(x)), before, 'unchanged');
    truncateSync(path, 200);
    await assert.rejects(loadCheckpoint(path), (e: unknown) => e instanceof ByolError && e.option === path && /truncated/.test((e as Error).message));
    writeFileSync(join(dir, 'x.bin'), 'hello');
    await assert.rejects(loadCheckpoint(join(dir, 'x.bin')), (e: unknown) => e instanceof ByolError && /not a byol checkpoint/.test((e as Error).message));
    a.dispose();
    other.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
