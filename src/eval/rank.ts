/**
 * Collapse diagnostics of a batch of features, in plain JavaScript (browser-safe): the effective rank (RankMe,
 * Garrido et al. 2023) and the per-dimension spread of the l2-normalized rows (the paper's collapse concern, §3.2).
 */
import { invalidOption } from '../errors.js';

/** Eigenvalues of a symmetric m×m matrix (row-major, float64, overwritten) by cyclic Jacobi rotations. */
export function symmetricEigenvalues(a: Float64Array, m: number): Float64Array {
  if (a.length !== m * m) throw invalidOption('matrix', `${m}×${m} values`, a.length);
  const off = () => {
    let s = 0;
    for (let i = 0; i < m; i++) for (let j = i + 1; j < m; j++) s += a[i * m + j]! ** 2;
    return s;
  };
  let scale = 0;
  for (let i = 0; i < m * m; i++) scale += a[i]! ** 2;
  for (let sweep = 0; sweep < 60 && off() > 1e-24 * Math.max(scale, 1e-300); sweep++) {
    for (let p = 0; p < m - 1; p++) {
      for (let q = p + 1; q < m; q++) {
        const apq = a[p * m + q]!;
        if (Math.abs(apq) < 1e-300) continue;
        const app = a[p * m + p]!;
        const aqq = a[q * m + q]!;
        // The rotation that zeroes a[p][q] (Golub & Van Loan, Algorithm 8.4.1).
        const theta = (aqq - app) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < m; k++) {
          const akp = a[k * m + p]!;
          const akq = a[k * m + q]!;
          a[k * m + p] = c * akp - s * akq;
          a[k * m + q] = s * akp + c * akq;
        }
        for (let k = 0; k < m; k++) {
          const apk = a[p * m + k]!;
          const aqk = a[q * m + k]!;
          a[p * m + k] = c * apk - s * aqk;
          a[q * m + k] = s * apk + c * aqk;
        }
      }
    }
  }
  return Float64Array.from({ length: m }, (_, i) => a[i * m + i]!);
}

/**
 * The singular values of an n×dim matrix (rows as given, not centred), largest first: square roots of the eigenvalues
 * of the smaller Gram matrix (n×n or dim×dim).
 */
export function singularValues(rows: Float32Array, n: number, dim: number): Float64Array {
  if (!(Number.isInteger(n) && n >= 1 && Number.isInteger(dim) && dim >= 1) || rows.length !== n * dim) {
    throw invalidOption('rows', `${n} × ${dim} values`, rows.length);
  }
  const byRows = n <= dim;
  const m = byRows ? n : dim;
  const g = new Float64Array(m * m);
  if (byRows) {
    for (let i = 0; i < n; i++) {
      for (let j = i; j < n; j++) {
        let s = 0;
        for (let k = 0; k < dim; k++) s += rows[i * dim + k]! * rows[j * dim + k]!;
        g[i * m + j] = s;
        g[j * m + i] = s;
      }
    }
  } else {
    for (let r = 0; r < n; r++) {
      const base = r * dim;
      for (let i = 0; i < dim; i++) {
        const x = rows[base + i]!;
        if (x === 0) continue;
        for (let j = i; j < dim; j++) g[i * m + j]! += x * rows[base + j]!;
      }
    }
    for (let i = 0; i < dim; i++) for (let j = 0; j < i; j++) g[i * m + j] = g[j * m + i]!;
  }
  return symmetricEigenvalues(g, m)
    .map((e) => Math.sqrt(Math.max(0, e)))
    .sort((a, b) => b - a);
}

/**
 * RankMe (Garrido et al. 2023): exp of the entropy of the singular values normalized to sum 1, with ε = 1e-7 as in
 * the paper. Between 1 (a rank-1 batch: collapse) and min(n, dim) (all directions used equally).
 */
export function effectiveRank(rows: Float32Array, n: number, dim: number): number {
  const sv = singularValues(rows, n, dim);
  const total = sv.reduce((s, x) => s + x, 0);
  if (total === 0) return 0;
  let h = 0;
  for (const x of sv) {
    const p = x / total + 1e-7;
    h -= p * Math.log(p);
  }
  return Math.exp(h);
}

/** Std over the rows of the l2-normalized rows, averaged over dimensions: ≈ 1/√dim when spread, → 0 when collapsed. */
export function normalizedStd(rows: Float32Array, n: number, dim: number): number {
  if (rows.length !== n * dim || n < 2) throw invalidOption('rows', `at least 2 rows of ${dim}`, rows.length);
  const unit = new Float64Array(n * dim);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let k = 0; k < dim; k++) s += rows[i * dim + k]! ** 2;
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let k = 0; k < dim; k++) unit[i * dim + k] = rows[i * dim + k]! * inv;
  }
  let total = 0;
  for (let k = 0; k < dim; k++) {
    let mean = 0;
    for (let i = 0; i < n; i++) mean += unit[i * dim + k]!;
    mean /= n;
    let v = 0;
    for (let i = 0; i < n; i++) v += (unit[i * dim + k]! - mean) ** 2;
    total += Math.sqrt(v / n);
  }
  return total / dim;
}
