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
    // Pseudo-random inputs in the range of normalized images, the same on every backend (drawn in JavaScript). Smooth
    // patterns were ill-conditioned here: batch-norm scale gradients that cancel to 1e-4 of their terms, where float32
    // summation order alone moves them by 1 %.
    let state = 12345;
    const next = () => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
    const input = () => tf.tensor4d(Float32Array.from({ length: n * 28 * 28 }, () => next() + next()), [n, 28, 28, 1]);
    const v1 = input();
    const v2 = input();
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
