/**
 * Looking at embeddings: a 2-D map by principal components and cosine nearest neighbours, in plain JavaScript on
 * `Float32Array` rows (browser-safe; a few thousand rows of a few hundred features take milliseconds).
 */
import { invalidOption } from '../errors.js';

export interface PcaResult {
  /** Row i's coordinates on the components: [x0, y0, x1, y1, …] (`components` values per row). */
  readonly coordinates: Float32Array;
  /** The unit principal directions, one `dim`-long row each, largest variance first. */
  readonly directions: Float32Array[];
  /** The variance along each direction. */
  readonly variances: number[];
  /** Share of the total variance each direction explains. */
  readonly explained: number[];
}

function checkRows(rows: Float32Array, n: number, dim: number): void {
  if (!(Number.isInteger(n) && n >= 2)) throw invalidOption('n', 'at least 2 rows', n);
  if (!(Number.isInteger(dim) && dim >= 1)) throw invalidOption('dim', 'a positive integer', dim);
  if (rows.length !== n * dim) throw invalidOption('rows', `${n} × ${dim} = ${n * dim} values`, rows.length);
}

/**
 * The first `components` principal components of n rows of `dim` features: the covariance (after centring) and its
 * leading eigenvectors by power iteration with deflation. Deterministic (a fixed start vector); each direction's sign
 * makes its largest entry positive, so that two runs on the same rows draw the same map.
 */
export function pca(rows: Float32Array, n: number, dim: number, components = 2): PcaResult {
  checkRows(rows, n, dim);
  if (!(Number.isInteger(components) && components >= 1 && components <= dim)) throw invalidOption('components', `an integer in [1, ${dim}]`, components);
  const mean = new Float64Array(dim);
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) mean[j]! += rows[i * dim + j]!;
  for (let j = 0; j < dim; j++) mean[j]! /= n;
  // Covariance, upper triangle accumulated in float64, then mirrored.
  const cov = new Float64Array(dim * dim);
  const centred = new Float64Array(dim);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < dim; j++) centred[j] = rows[i * dim + j]! - mean[j]!;
    for (let a = 0; a < dim; a++) {
      const ca = centred[a]!;
      if (ca === 0) continue;
      const off = a * dim;
      for (let b = a; b < dim; b++) cov[off + b]! += ca * centred[b]!;
    }
  }
  let total = 0;
  for (let a = 0; a < dim; a++) {
    for (let b = a; b < dim; b++) {
      const v = cov[a * dim + b]! / (n - 1);
      cov[a * dim + b] = v;
      cov[b * dim + a] = v;
    }
    total += cov[a * dim + a]!;
  }
  const directions: Float32Array[] = [];
  const variances: number[] = [];
  const v = new Float64Array(dim);
  const w = new Float64Array(dim);
  for (let c = 0; c < components; c++) {
    for (let j = 0; j < dim; j++) v[j] = 1 + ((j * 7919 + c * 104729) % 97) / 97; // fixed, not orthogonal to anything in general
    let lambda = 0;
    for (let iter = 0; iter < 1000; iter++) {
      for (let a = 0; a < dim; a++) {
        let s = 0;
        const off = a * dim;
        for (let b = 0; b < dim; b++) s += cov[off + b]! * v[b]!;
        w[a] = s;
      }
      let norm = 0;
      for (let a = 0; a < dim; a++) norm += w[a]! * w[a]!;
      norm = Math.sqrt(norm);
      if (norm === 0) break; // no variance left: any unit direction will do
      let change = 0;
      for (let a = 0; a < dim; a++) {
        const x = w[a]! / norm;
        change = Math.max(change, Math.abs(x - v[a]!));
        v[a] = x;
      }
      const converged = Math.abs(norm - lambda) <= 1e-12 * Math.max(1, norm) && change < 1e-9;
      lambda = norm;
      if (converged) break;
    }
    let norm = 0;
    for (let a = 0; a < dim; a++) norm += v[a]! * v[a]!;
    norm = Math.sqrt(norm) || 1;
    let big = 0;
    for (let a = 0; a < dim; a++) if (Math.abs(v[a]!) > Math.abs(v[big]!)) big = a;
    const sign = v[big]! < 0 ? -1 : 1;
    const dir = new Float32Array(dim);
    for (let a = 0; a < dim; a++) dir[a] = (sign * v[a]!) / norm;
    // Rayleigh quotient: the variance along the direction (exact even when the iteration stopped early).
    let q = 0;
    for (let a = 0; a < dim; a++) {
      let s = 0;
      for (let b = 0; b < dim; b++) s += cov[a * dim + b]! * dir[b]!;
      q += dir[a]! * s;
    }
    directions.push(dir);
    variances.push(q);
    // Deflate: remove this direction's variance so the next iteration finds the next one.
    for (let a = 0; a < dim; a++) for (let b = 0; b < dim; b++) cov[a * dim + b]! -= q * dir[a]! * dir[b]!;
  }
  const coordinates = new Float32Array(n * components);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < components; c++) {
      const dir = directions[c]!;
      let s = 0;
      for (let j = 0; j < dim; j++) s += (rows[i * dim + j]! - mean[j]!) * dir[j]!;
      coordinates[i * components + c] = s;
    }
  }
  return { coordinates, directions, variances, explained: variances.map((x) => (total > 0 ? x / total : 0)) };
}

/**
 * The k rows most cosine-similar to row `query` (itself left out), best first, with their similarities. Rows of zero
 * length have similarity 0 to everything.
 */
export function cosineNeighbours(rows: Float32Array, n: number, dim: number, query: number, k: number): { index: number; similarity: number }[] {
  checkRows(rows, n, dim);
  if (!(Number.isInteger(query) && query >= 0 && query < n)) throw invalidOption('query', `a row index in [0, ${n - 1}]`, query);
  if (!(Number.isInteger(k) && k >= 1)) throw invalidOption('k', 'a positive integer', k);
  const norms = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += rows[i * dim + j]! * rows[i * dim + j]!;
    norms[i] = Math.sqrt(s);
  }
  const q = query * dim;
  const scored: { index: number; similarity: number }[] = [];
  for (let i = 0; i < n; i++) {
    if (i === query) continue;
    let s = 0;
    for (let j = 0; j < dim; j++) s += rows[q + j]! * rows[i * dim + j]!;
    const d = norms[query]! * norms[i]!;
    scored.push({ index: i, similarity: d > 0 ? s / d : 0 });
  }
  scored.sort((a, b) => b.similarity - a.similarity || a.index - b.index);
  return scored.slice(0, k);
}
