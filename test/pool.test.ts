import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { BufferPool, MISS_SLACK } from '../src/native/pool.js';
import { loadNativeAddon, nativeLoadError, releaseNativeMemory, useBackend } from '../src/node.js';

const skip = loadNativeAddon() ? false : `native addon not built (${nativeLoadError()})`;

test('the buffer pool reuses a given-back array of the same length, and only its own whole arrays', () => {
  const pool = new BufferPool(1 << 20, 16);
  const a = pool.take(100);
  assert.equal(a.length, 100);
  pool.give(a);
  assert.equal(pool.stats().freeBytes, 400);
  assert.equal(pool.take(100), a, 'same length: the same array back');
  assert.equal(pool.stats().freeBytes, 0);
  assert.notEqual(pool.take(100), a, 'a second take gets fresh memory');
  // Not ours, or only part of ours: never kept.
  pool.give(new Float32Array(100));
  pool.give(a.subarray(10, 60));
  pool.give(new Int32Array(100));
  pool.give(null);
  assert.equal(pool.stats().freeBytes, 0);
  assert.ok(pool.owns(a.subarray(10, 60)));
  assert.ok(!pool.owns(new Float32Array(100)));
  // Small arrays are plain Float32Arrays, zeroed, outside the pool.
  const small = pool.take(8);
  assert.deepEqual(Array.from(small), new Array(8).fill(0));
  assert.ok(!pool.owns(small));
  assert.deepEqual({ reused: pool.stats().reused, allocated: pool.stats().allocated }, { reused: 1, allocated: 2 });
});

test('the buffer pool keeps at most its limit, dropping the oldest free arrays first', () => {
  const pool = new BufferPool(1000, 16); // bytes: room for two arrays of 100 floats
  const [a, b, c] = [pool.take(100), pool.take(100), pool.take(120)];
  pool.give(a);
  pool.give(b);
  assert.equal(pool.stats().freeBytes, 800);
  pool.give(c); // 480 more bytes would make 1280: the oldest (a) goes
  assert.equal(pool.stats().freeBytes, 880);
  assert.equal(pool.take(120), c);
  assert.equal(pool.take(100), b);
  const fresh = pool.take(100);
  assert.ok(fresh !== a && fresh !== b);
  pool.give(pool.take(300)); // 1200 bytes: larger than the limit, never kept
  assert.equal(pool.stats().freeBytes, 0);
  pool.give(fresh);
  pool.clear();
  assert.equal(pool.stats().freeBytes, 0);
});

test('the buffer pool keeps no more free memory than its buffers ever held live at once', () => {
  const pool = new BufferPool(1 << 30, 16);
  const a = pool.take(100); // 400 bytes live: the high-water mark
  pool.give(a);
  const c = pool.take(50); // fresh (no free array of this length): 200 bytes live
  pool.give(c); // 600 bytes free would exceed the 400 ever live: the oldest (a) goes
  assert.deepEqual({ free: pool.stats().freeBytes, peak: pool.stats().peakLiveBytes }, { free: 200, peak: 400 });
  assert.equal(pool.take(50), c);
  assert.notEqual(pool.take(100), a);
});

test('on a miss the pool drops old free arrays so that live plus free stays within half past the working set (a change of shapes)', () => {
  assert.equal(MISS_SLACK, 1.5);
  const pool = new BufferPool(1 << 30, 16);
  // A "training step" of three arrays: 1 200 bytes live at once, then all given back.
  const step = [pool.take(100), pool.take(100), pool.take(100)];
  step.forEach((a) => pool.give(a));
  assert.deepEqual({ free: pool.stats().freeBytes, peak: pool.stats().peakLiveBytes }, { free: 1200, peak: 1200 });
  // "Evaluation": other shapes. Each miss first makes room within 1.5 × the 1 200 bytes ever live at once.
  const e1 = pool.take(150); // 0 live + 600 new: 1 200 free may stay — nothing goes
  assert.equal(pool.stats().freeBytes, 1200);
  const e2 = pool.take(150); // 600 live + 600 new: at most 600 free — whole arrays, the oldest two go
  assert.equal(pool.stats().freeBytes, 400);
  const e3 = pool.take(150); // 1 200 live + 600 new: none may stay
  assert.equal(pool.stats().freeBytes, 0);
  assert.equal(pool.stats().peakLiveBytes, 1800);
  // Same shapes again: hits, nothing dropped.
  pool.give(e1);
  assert.equal(pool.take(150), e1);
  [e1, e2, e3].forEach((a) => pool.give(a));
  assert.equal(pool.stats().freeBytes, 1800);
  // A miss within the slack drops nothing: 1 800 free + 200 new ≤ 2 700.
  const small = pool.take(50);
  assert.equal(pool.stats().freeBytes, 1800);
  pool.give(small);
});

test('native: disposed outputs are reused, yet data read earlier, slices and reshapes of them stay intact', { skip }, async () => {
  await useBackend('native');
  const before = tf.memory().numTensors;
  const n = 64 * 1024;
  const x = tf.range(0, n, 1, 'float32');
  // Output of a native kernel, so its buffer belongs to the pool.
  const y = tf.add(x, 1);
  const read = y.dataSync();
  const sliced = tf.slice(y, [5], [10]); // the cpu backend's Slice returns a view of its input
  const reshaped = tf.reshape(y, [256, 256]); // same data, one more reference
  y.dispose();
  const reusedBefore = releaseNativeMemory().reused; // empty the pool: the next steps see only what they free
  const z = tf.mul(x, 2);
  z.dispose(); // its buffer is now free...
  const w = tf.mul(x, -3); // ...and serves this output
  assert.ok(releaseNativeMemory().reused > reusedBefore, 'a disposed output served the next one');
  reshaped.dispose(); // last reference to y's buffer: back to the pool
  const v = tf.mul(x, 7); // may now overwrite y's old buffer
  assert.equal(read[0], 1);
  assert.equal(read[n - 1], n);
  assert.deepEqual(Array.from(sliced.dataSync()), [6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
  assert.equal(w.dataSync()[3], -9);
  assert.equal(v.dataSync()[2], 14);
  tf.dispose([x, sliced, w, v]);
  assert.equal(tf.memory().numTensors, before);
  await useBackend('cpu');
});
