import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ByolError } from '../errors.js';
import { checkRecordSize, type ImageBatch, type ImageSource } from './source.js';

/** Files up to this size are read into memory whole; larger ones (STL-10's 2.8 GB unlabelled set) record by record. */
const IN_MEMORY_LIMIT = 512 * 1024 * 1024;

/** Fixed-size records spread over one or more files, read by global index. */
class RecordFiles {
  private constructor(
    private readonly parts: { path: string; count: number; data: Buffer | null; handle: FileHandle | null }[],
    readonly recordBytes: number,
  ) {}

  /** `expected`: the official record count of each file (null: any whole number of records). */
  static async open(paths: readonly string[], recordBytes: number, what: string, expected: number | null): Promise<RecordFiles> {
    const parts = [];
    for (const path of paths) {
      let size: number;
      try {
        size = (await stat(path)).size;
      } catch (e) {
        throw new ByolError('INVALID_DATA', `${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, path);
      }
      const count = checkRecordSize(path, size, recordBytes, what);
      if (expected !== null && count !== expected) throw wrongCount(path, count, expected, recordBytes, what);
      if (size <= IN_MEMORY_LIMIT) parts.push({ path, count, data: await readFile(path), handle: null });
      else parts.push({ path, count, data: null, handle: await open(path, 'r') });
    }
    return new RecordFiles(parts, recordBytes);
  }

  get length(): number {
    return this.parts.reduce((n, p) => n + p.count, 0);
  }

  /** The bytes of record `index`. */
  async record(index: number): Promise<Uint8Array> {
    let i = index;
    for (const p of this.parts) {
      if (i < p.count) {
        if (p.data) return p.data.subarray(i * this.recordBytes, (i + 1) * this.recordBytes);
        const buf = Buffer.alloc(this.recordBytes);
        await p.handle!.read(buf, 0, this.recordBytes, i * this.recordBytes);
        return buf;
      }
      i -= p.count;
    }
    throw new ByolError('INVALID_INPUT', `record ${index} is out of range (${this.length} records)`, 'index');
  }

  async close(): Promise<void> {
    await Promise.all(this.parts.map((p) => p.handle?.close()));
  }
}

export type Split = 'train' | 'test';

/** Options of the binary-format readers. */
export interface BinaryDatasetOptions {
  /**
   * Require the official record count of each file (default true): CIFAR-10 10 000 per file, CIFAR-100 50 000 /
   * 10 000, STL-10 5 000 / 8 000 / 100 000. A file cut at a record boundary is then an error, not a smaller dataset.
   * false accepts any whole number of records (your own data in the same layout).
   */
  readonly exact?: boolean;
}

const thousands = (n: number) => n.toLocaleString('en-US');

function wrongCount(path: string, count: number, expected: number, recordBytes: number, what: string): ByolError {
  return new ByolError(
    'INVALID_DATA',
    `${path}: ${thousands(count)} ${what} records (${thousands(count * recordBytes)} bytes); the official file has ${thousands(expected)} ` +
      `(${thousands(expected * recordBytes)} bytes) — ${count < expected ? 'truncated' : 'too long'}? (a copy in this layout with other counts: exact: false)`,
    path,
  );
}

export const CIFAR10_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];

function checkIndices(indices: readonly number[], length: number, name: string): void {
  for (const i of indices) {
    if (!(Number.isInteger(i) && i >= 0 && i < length)) throw new ByolError('INVALID_INPUT', `${name}: index ${i} is out of range [0, ${length})`, 'indices');
  }
}

/** Planar CHW bytes (CIFAR's R plane, G plane, B plane) into interleaved HWC. */
function planarToInterleaved(src: Uint8Array, dst: Uint8Array, offset: number, side: number): void {
  const plane = side * side;
  for (let p = 0; p < plane; p++) {
    dst[offset + 3 * p] = src[p]!;
    dst[offset + 3 * p + 1] = src[plane + p]!;
    dst[offset + 3 * p + 2] = src[2 * plane + p]!;
  }
}

async function readLines(path: string): Promise<string[] | null> {
  if (!existsSync(path)) return null;
  const lines = (await readFile(path, 'utf8')).split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
  return lines.length > 0 ? lines : null;
}

/**
 * CIFAR-10 in its binary version: `data_batch_1..5.bin` (train) or `test_batch.bin` (test) in `dir`, records of
 * 1 label byte + 3072 pixel bytes (R, G, B planes of 32×32).
 */
export async function cifar10(dir: string, split: Split, options: BinaryDatasetOptions = {}): Promise<ImageSource> {
  const names = split === 'train' ? [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`) : ['test_batch.bin'];
  const files = await RecordFiles.open(names.map((n) => join(dir, n)), 3073, 'CIFAR-10', options.exact === false ? null : 10_000);
  const classes = (await readLines(join(dir, 'batches.meta.txt'))) ?? CIFAR10_CLASSES;
  return cifarSource(`cifar10-${split}`, files, 1, 0, classes);
}

/**
 * CIFAR-100 in its binary version: `train.bin` or `test.bin` in `dir`, records of a coarse label byte, a fine label
 * byte and 3072 pixel bytes. `labels` chooses which label the batches carry (default fine, 100 classes).
 */
export async function cifar100(dir: string, split: Split, labels: 'fine' | 'coarse' = 'fine', options: BinaryDatasetOptions = {}): Promise<ImageSource> {
  const files = await RecordFiles.open([join(dir, `${split}.bin`)], 3074, 'CIFAR-100', options.exact === false ? null : split === 'train' ? 50_000 : 10_000);
  const names = await readLines(join(dir, labels === 'fine' ? 'fine_label_names.txt' : 'coarse_label_names.txt'));
  const classes = names ?? Array.from({ length: labels === 'fine' ? 100 : 20 }, (_, i) => String(i));
  return cifarSource(`cifar100-${split}`, files, 2, labels === 'fine' ? 1 : 0, classes);
}

function cifarSource(name: string, files: RecordFiles, header: number, labelAt: number, classes: readonly string[]): ImageSource {
  const length = files.length;
  return {
    name,
    length,
    imageShape: [32, 32, 3],
    classes,
    async read(indices) {
      checkIndices(indices, length, name);
      const images = new Uint8Array(indices.length * 3072);
      const labels = new Int32Array(indices.length);
      for (let k = 0; k < indices.length; k++) {
        const rec = await files.record(indices[k]!);
        const label = rec[labelAt]!;
        if (label >= classes.length) {
          throw new ByolError('INVALID_DATA', `${name}: record ${indices[k]} has label ${label}, but there are ${classes.length} classes`, name);
        }
        labels[k] = label;
        planarToInterleaved(rec.subarray(header), images, k * 3072, 32);
      }
      return batchOf(images, [indices.length, 32, 32, 3], labels, indices, name);
    },
    close: () => files.close(),
  };
}

export function batchOf(
  images: Uint8Array,
  shape: [number, number, number, number],
  labels: Int32Array | null,
  indices: readonly number[],
  name: string,
): ImageBatch {
  return { images, shape, labels, indices: [...indices], ids: indices.map((i) => `${name}:${i}`) };
}

export type Stl10Split = 'train' | 'test' | 'unlabeled';

/**
 * STL-10 binary version: `train_X.bin`/`train_y.bin`, `test_X.bin`/`test_y.bin` or `unlabeled_X.bin` in `dir`;
 * 96×96×3 images stored channel by channel, each channel column-major; labels 1–10 in the files, 0–9 here.
 */
export async function stl10(dir: string, split: Stl10Split, options: BinaryDatasetOptions = {}): Promise<ImageSource> {
  const side = 96;
  const bytes = side * side * 3;
  const official = { train: 5_000, test: 8_000, unlabeled: 100_000 }[split];
  const files = await RecordFiles.open([join(dir, `${split}_X.bin`)], bytes, 'STL-10 image', options.exact === false ? null : official);
  let labels: Uint8Array | null = null;
  if (split !== 'unlabeled') {
    const path = join(dir, `${split}_y.bin`);
    try {
      labels = await readFile(path);
    } catch (e) {
      throw new ByolError('INVALID_DATA', `${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, path);
    }
    if (labels.length !== files.length) {
      throw new ByolError('INVALID_DATA', `${path}: ${labels.length} labels for ${files.length} images in ${split}_X.bin`, path);
    }
    const bad = labels.findIndex((l) => l < 1 || l > 10);
    if (bad >= 0) throw new ByolError('INVALID_DATA', `${path}: label ${labels[bad]} at ${bad} is not in 1..10`, path);
  }
  const classes = split === 'unlabeled' ? null : ((await readLines(join(dir, 'class_names.txt'))) ?? ['airplane', 'bird', 'car', 'cat', 'deer', 'dog', 'horse', 'monkey', 'ship', 'truck']);
  const name = `stl10-${split}`;
  const length = files.length;
  return {
    name,
    length,
    imageShape: [side, side, 3],
    classes,
    async read(indices) {
      checkIndices(indices, length, name);
      const images = new Uint8Array(indices.length * bytes);
      const out = labels ? new Int32Array(indices.length) : null;
      for (let k = 0; k < indices.length; k++) {
        const rec = await files.record(indices[k]!);
        const base = k * bytes;
        for (let c = 0; c < 3; c++) {
          for (let x = 0; x < side; x++) {
            for (let y = 0; y < side; y++) images[base + (y * side + x) * 3 + c] = rec[c * side * side + x * side + y]!;
          }
        }
        if (out) out[k] = labels![indices[k]!]! - 1;
      }
      return batchOf(images, [indices.length, side, side, 3], out, indices, name);
    },
    close: () => files.close(),
  };
}
