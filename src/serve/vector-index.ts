/**
 * Exact cosine search over l2-normalized embeddings, in memory: add (or replace) and remove by id, top-k by a
 * dot product over every row. Exact rather than approximate: at the sizes a CPU service holds (10⁴–10⁵ items of
 * 128–2048 dimensions) one query is a few milliseconds of multiply-adds (README: measured), no recall is lost, and
 * nothing native is needed. Browser-safe (no Node modules).
 */
import { ByolError } from '../errors.js';

export interface Item {
  readonly id: string;
  readonly label: string | number | null;
}

export interface Hit extends Item {
  /** Cosine similarity, in [−1, 1]. */
  readonly score: number;
}

/** Ids are strings of 1–256 characters without control characters (they are never used as paths). */
export function checkId(id: unknown): string {
  // eslint-disable-next-line no-control-regex
  if (typeof id !== 'string' || id.length === 0 || id.length > 256 || /[\u0000-\u001f\u007f]/.test(id)) {
    throw new ByolError('INVALID_INPUT', `id must be a string of 1–256 characters without control characters; got ${JSON.stringify(id)?.slice(0, 80)}`, 'id');
  }
  return id;
}

/** `v` scaled to length 1, or null when its length is 0 or not finite. */
export function unitVector(v: ArrayLike<number>): Float32Array | null {
  let norm = 0;
  for (let j = 0; j < v.length; j++) norm += v[j]! * v[j]!;
  if (!(norm > 0) || !Number.isFinite(norm)) return null;
  const inv = 1 / Math.sqrt(norm);
  return Float32Array.from({ length: v.length }, (_, j) => v[j]! * inv);
}

export class VectorIndex {
  private data: Float32Array;
  private readonly items: Item[] = [];
  /** Incremented by every change (for caches of the matrix, such as the service's tensor of it). */
  version = 0;
  private readonly rows = new Map<string, number>();

  constructor(readonly dim: number, capacity = 1024) {
    if (!(Number.isInteger(dim) && dim > 0)) throw new ByolError('INVALID_OPTION', `dim must be a positive integer; got ${dim}`, 'dim');
    this.data = new Float32Array(dim * Math.max(1, capacity));
  }

  /** An index of `items`, item i's embedding being row i of `data` ([items.length, dim], row-major). */
  static fromRows(dim: number, items: readonly Item[], data: Float32Array): VectorIndex {
    const index = new VectorIndex(dim, items.length);
    items.forEach((item, i) => index.add(item, data.subarray(i * dim, (i + 1) * dim)));
    return index;
  }

  get size(): number {
    return this.items.length;
  }

  /** Adds an item, or replaces the vector and label of the item with its id. The vector is l2-normalized. */
  add(item: Item, vector: ArrayLike<number>): void {
    checkId(item.id);
    if (vector.length !== this.dim) throw new ByolError('INVALID_INPUT', `embedding of ${item.id}: ${vector.length} values, the index holds ${this.dim}`, 'embedding');
    const unit = unitVector(vector);
    if (!unit) throw new ByolError('INVALID_INPUT', `embedding of ${item.id}: zero or not finite`, 'embedding');
    let row = this.rows.get(item.id);
    if (row === undefined) {
      row = this.items.length;
      if ((row + 1) * this.dim > this.data.length) {
        const grown = new Float32Array(Math.max(this.data.length * 2, (row + 1) * this.dim));
        grown.set(this.data);
        this.data = grown;
      }
      this.items.push({ id: item.id, label: item.label });
      this.rows.set(item.id, row);
    } else this.items[row] = { id: item.id, label: item.label };
    const at = row * this.dim;
    this.data.set(unit, at);
    this.version++;
  }

  /** Removes an item (the last row takes its place); false when there was none with that id. */
  remove(id: string): boolean {
    const row = this.rows.get(id);
    if (row === undefined) return false;
    const last = this.items.length - 1;
    if (row !== last) {
      this.data.copyWithin(row * this.dim, last * this.dim, (last + 1) * this.dim);
      const moved = this.items[last]!;
      this.items[row] = moved;
      this.rows.set(moved.id, row);
    }
    this.items.pop();
    this.rows.delete(id);
    this.version++;
    return true;
  }

  /** The rows as one [size, dim] matrix (a view, valid until the next change), for batched search elsewhere. */
  matrix(): Float32Array {
    return this.data.subarray(0, this.items.length * this.dim);
  }

  /** The item of a row of {@link matrix}. */
  itemAt(row: number): Item {
    const item = this.items[row];
    if (!item) throw new ByolError('INVALID_INPUT', `row ${row} of ${this.items.length}`, 'row');
    return item;
  }

  has(id: string): boolean {
    return this.rows.has(id);
  }

  /** The stored (normalized) vector of an item, a copy; null when there is none. */
  vector(id: string): Float32Array | null {
    const row = this.rows.get(id);
    return row === undefined ? null : this.data.slice(row * this.dim, (row + 1) * this.dim);
  }

  /** Every item with its vector, in row order (for persisting). */
  *entries(): Generator<[Item, Float32Array]> {
    for (let r = 0; r < this.items.length; r++) yield [this.items[r]!, this.data.subarray(r * this.dim, (r + 1) * this.dim)];
  }

  /**
   * The k items most cosine-similar to `query` (any norm), best first; ties by row order. `exclude` leaves one id out
   * (a search by an indexed item's own vector).
   */
  search(query: ArrayLike<number>, k: number, exclude?: string): Hit[] {
    if (query.length !== this.dim) throw new ByolError('INVALID_INPUT', `query of ${query.length} values, the index holds ${this.dim}`, 'query');
    const q = unitVector(query) ?? new Float32Array(this.dim);
    const skip = exclude === undefined ? -1 : (this.rows.get(exclude) ?? -1);
    const n = this.items.length;
    const scores = new Float32Array(n);
    const d = this.dim;
    const data = this.data;
    for (let r = 0; r < n; r++) {
      let s = 0;
      const at = r * d;
      for (let j = 0; j < d; j++) s += data[at + j]! * q[j]!;
      scores[r] = s;
    }
    return topK(scores, k + (skip >= 0 ? 1 : 0))
      .filter((r) => r !== skip)
      .slice(0, k)
      .map((r) => ({ ...this.items[r]!, score: Math.max(-1, Math.min(1, scores[r]!)) }));
  }
}

/** The rows of the k largest scores, largest first (ties: lower row first); a heap of k over one pass. */
export function topK(scores: Float32Array, k: number): number[] {
  const want = Math.min(k, scores.length);
  if (want <= 0) return [];
  const hs = new Float64Array(want);
  const hr = new Int32Array(want);
  let n = 0;
  for (let r = 0; r < scores.length; r++) {
    const s = scores[r]!;
    if (n < want) {
      let i = n++;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (hs[p]! <= s) break;
        hs[i] = hs[p]!;
        hr[i] = hr[p]!;
        i = p;
      }
      hs[i] = s;
      hr[i] = r;
    } else if (s > hs[0]!) {
      let i = 0;
      for (;;) {
        const a = 2 * i + 1;
        if (a >= n) break;
        const c = a + 1 < n && hs[a + 1]! < hs[a]! ? a + 1 : a;
        if (hs[c]! >= s) break;
        hs[i] = hs[c]!;
        hr[i] = hr[c]!;
        i = c;
      }
      hs[i] = s;
      hr[i] = r;
    }
  }
  return Array.from({ length: n }, (_, i) => i).sort((a, b) => hs[b]! - hs[a]! || hr[a]! - hr[b]!).map((i) => hr[i]!);
}
