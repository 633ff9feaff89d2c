/**
 * The embedding map's parts against closed forms: principal components of rows built from known orthogonal directions
 * and variances, and cosine neighbours of hand-made rows.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ByolError } from '../src/errors.js';
import { cosineNeighbours, pca } from '../src/eval/map.js';

/** An orthonormal basis of R^dim: a Householder reflection of the identity (its rows). */
function basis(dim: number): Float64Array[] {
  const h = Array.from({ length: dim }, (_, j) => Math.sin(j + 1) + 0.3);
  const hn = Math.sqrt(h.reduce((s, x) => s + x * x, 0));
  return Array.from({ length: dim }, (_, r) => Float64Array.from({ length: dim }, (_, c) => (r === c ? 1 : 0) - (2 * h[r]! * h[c]!) / (hn * hn)));
}

test('pca: rows spread along known orthogonal directions give those directions and variances (closed form)', () => {
  const n = 240;
  const dim = 6;
  const u = basis(dim);
  const sigma = [3, 2, 0.5];
  const centre = [1, -2, 0.5, 4, 0, 7];
  // cos(2πi/n), sin(2πi/n), cos(4πi/n) are zero-mean and mutually orthogonal over a full period, each with Σ = n/2.
  const coef = (i: number) => [Math.cos((2 * Math.PI * i) / n), Math.sin((2 * Math.PI * i) / n), Math.cos((4 * Math.PI * i) / n)];
  const rows = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) {
    const c = coef(i);
    for (let j = 0; j < dim; j++) rows[i * dim + j] = centre[j]! + sigma.reduce((s, sg, k) => s + sg * c[k]! * u[k]![j]!, 0);
  }
  const r = pca(rows, n, dim, 3);
  for (let k = 0; k < 3; k++) {
    const want = (sigma[k]! ** 2 * n) / 2 / (n - 1);
    assert.ok(Math.abs(r.variances[k]! - want) < 1e-4 * want, `variance ${k}: ${r.variances[k]} vs ${want}`);
    const dot = r.directions[k]!.reduce((s, x, j) => s + x * u[k]![j]!, 0);
    assert.ok(Math.abs(Math.abs(dot) - 1) < 1e-5, `direction ${k}: |cos| ${dot}`);
    // The largest entry is positive (a stable sign), and the coordinates are the coefficients times sigma.
    const big = r.directions[k]!.reduce((b, x, j, a) => (Math.abs(x) > Math.abs(a[b]!) ? j : b), 0);
    assert.ok(r.directions[k]![big]! > 0);
    for (const i of [0, 17, 100]) assert.ok(Math.abs(r.coordinates[i * 3 + k]! - Math.sign(dot) * sigma[k]! * coef(i)[k]!) < 1e-4, `coordinate ${i},${k}`);
  }
  const total = sigma.reduce((s, x) => s + x * x, 0);
  r.explained.forEach((e, k) => assert.ok(Math.abs(e - sigma[k]! ** 2 / total) < 1e-5));
  // Deterministic: the same rows draw the same map.
  assert.deepEqual(pca(rows, n, dim).coordinates, pca(rows, n, dim).coordinates);
});

test('pca: constant rows have no variance (zeros, no NaN); bad shapes are named', () => {
  const r = pca(new Float32Array(12).fill(3), 4, 3);
  assert.deepEqual([...r.coordinates], new Array(8).fill(0));
  assert.deepEqual(r.variances, [0, 0]);
  assert.deepEqual(r.explained, [0, 0]);
  assert.throws(() => pca(new Float32Array(5), 2, 3), (e: unknown) => e instanceof ByolError && e.code === 'INVALID_OPTION' && /rows/.test((e as Error).message));
  assert.throws(() => pca(new Float32Array(3), 1, 3), /n/);
  assert.throws(() => pca(new Float32Array(6), 2, 3, 4), /components/);
});

test('cosineNeighbours: best first by cosine, the query itself left out, ties by index; bad query named', () => {
  const rows = Float32Array.from([1, 0, /* 1 */ 0.9, 0.1, /* 2 */ -1, 0, /* 3 */ 0, 1, /* 4 */ 2, 0, /* 5 */ 0, 0]);
  const got = cosineNeighbours(rows, 6, 2, 0, 4);
  assert.deepEqual(got.map((g) => g.index), [4, 1, 3, 5]);
  assert.ok(Math.abs(got[0]!.similarity - 1) < 1e-7);
  assert.ok(Math.abs(got[1]!.similarity - 0.9 / Math.hypot(0.9, 0.1)) < 1e-7);
  assert.equal(got[3]!.similarity, 0, 'a zero row: similarity 0');
  assert.equal(cosineNeighbours(rows, 6, 2, 0, 50).length, 5);
  assert.throws(() => cosineNeighbours(rows, 6, 2, 6, 1), /query/);
  assert.throws(() => cosineNeighbours(rows, 6, 2, 0, 0), /k/);
});
