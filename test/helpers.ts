import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import '../src/index.js';

export interface Arr {
  shape: number[];
  data: number[];
}

/** The PyTorch reference values written by scripts/make_fixtures.py. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const reference: any = JSON.parse(
  readFileSync(new URL('../../test/fixtures/reference.json', import.meta.url), 'utf8'),
);

export function tensorOf(a: Arr): tf.Tensor {
  return tf.tensor(a.data, a.shape, 'float32');
}

/** |actual − expected| ≤ atol + rtol·|expected| elementwise, with the worst offender in the message. */
export function assertClose(
  actual: ArrayLike<number> | number,
  expected: ArrayLike<number> | number,
  atol = 1e-5,
  rtol = 1e-5,
  what = 'value',
): void {
  const a = typeof actual === 'number' ? [actual] : Array.from(actual);
  const e = typeof expected === 'number' ? [expected] : Array.from(expected);
  assert.equal(a.length, e.length, `${what}: length ${a.length} != ${e.length}`);
  for (let i = 0; i < a.length; i++) {
    const err = Math.abs(a[i]! - e[i]!);
    if (!(err <= atol + rtol * Math.abs(e[i]!))) {
      assert.fail(`${what}[${i}]: got ${a[i]}, expected ${e[i]} (error ${err.toExponential(2)})`);
    }
  }
}

export function assertTensorClose(actual: tf.Tensor, expected: Arr, atol = 1e-5, rtol = 1e-5, what = 'tensor'): void {
  assert.deepEqual(actual.shape, expected.shape, `${what}: shape`);
  assertClose(actual.dataSync(), expected.data, atol, rtol, what);
}

/** Runs `fn` and checks that it leaves the number of live tensors unchanged. */
export async function assertNoLeak(fn: () => unknown | Promise<unknown>, what = 'call'): Promise<void> {
  const before = tf.memory().numTensors;
  await fn();
  assert.equal(tf.memory().numTensors, before, `${what} leaked ${tf.memory().numTensors - before} tensors`);
}
