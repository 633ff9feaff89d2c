/**
 * One BYOL step from fixed weights and fixed inputs, the same in the page and in Node: the browser test compares the
 * page's webgl (and wasm) result with Node's cpu backend. Returns the loss, the collapse metric, the loss of a
 * second step (after the update) and every online weight's change by the first update.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Byol, convNet } from '../../src/index.js';

export interface ReferenceResult {
  readonly backend: string;
  readonly loss: number;
  readonly collapse: number;
  readonly secondLoss: number;
  /** Every online weight's change by the first step, concatenated in the learner's order. */
  readonly deltas: number[];
}

export async function referenceStep(): Promise<ReferenceResult> {
  const n = 8;
  const learner = new Byol({
    encoder: convNet({ inputShape: [28, 28, 1], channels: [8, 16, 32], seed: 11 }),
    batchSize: n,
    totalSteps: 10,
    projector: { hiddenDim: 64, outputDim: 32 },
    predictor: { hiddenDim: 64 },
    warmupSteps: 0,
    seed: 11,
  });
  try {
    // Smooth, distinct inputs in the range of normalized images.
    const input = (f: (i: number) => number) => tf.tensor4d(Float32Array.from({ length: n * 28 * 28 }, (_, i) => f(i)), [n, 28, 28, 1]);
    const v1 = input((i) => Math.sin(i * 0.37) + 0.3 * Math.cos(i * 0.011));
    const v2 = input((i) => Math.cos(i * 0.23) - 0.2 * Math.sin(i * 0.017));
    const before = await Promise.all(learner.onlineWeights.map((w) => w.data<'float32'>()));
    const first = await learner.step(v1, v2);
    const after = await Promise.all(learner.onlineWeights.map((w) => w.data<'float32'>()));
    const second = await learner.step(v1, v2);
    tf.dispose([v1, v2]);
    const deltas: number[] = [];
    after.forEach((a, k) => a.forEach((x, i) => deltas.push(x - before[k]![i]!)));
    return { backend: tf.getBackend(), loss: first.loss, collapse: first.collapse, secondLoss: second.loss, deltas };
  } finally {
    learner.dispose();
  }
}

/** Largest difference between two results' weight changes, relative to the largest change. */
export function deltaDifference(a: ReferenceResult, b: ReferenceResult): number {
  let diff = 0;
  let scale = 0;
  a.deltas.forEach((x, i) => {
    diff = Math.max(diff, Math.abs(x - b.deltas[i]!));
    scale = Math.max(scale, Math.abs(b.deltas[i]!));
  });
  return diff / scale;
}
