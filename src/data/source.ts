import { ByolError, invalidOption } from '../errors.js';
import { Rng } from '../views/rng.js';

/** A batch of images as bytes, NHWC, with labels where the dataset has them and an id per image. */
export interface ImageBatch {
  /** N×H×W×C bytes (0–255). */
  readonly images: Uint8Array;
  readonly shape: readonly [number, number, number, number];
  /** Class index per image, or null for unlabelled data. */
  readonly labels: Int32Array | null;
  /** A stable id per image: `name:index` for binary datasets, the relative path for folders. */
  readonly ids: readonly string[];
  /** The images' indices in the source. */
  readonly indices: readonly number[];
}

/** Random access to a dataset's images. */
export interface ImageSource {
  readonly name: string;
  readonly length: number;
  /** [height, width, channels] of every image it returns. */
  readonly imageShape: readonly [number, number, number];
  /** Class names in label order, or null for unlabelled data. */
  readonly classes: readonly string[] | null;
  /** Reads the images at `indices` (in that order). Images that fail and are skipped by policy are left out. */
  read(indices: readonly number[]): Promise<ImageBatch>;
  close(): Promise<void>;
}

export interface BatchOptions {
  readonly batchSize: number;
  /** Shuffle each epoch (seeded). Default true. */
  readonly shuffle?: boolean;
  /** Seed of the order. Default 0. */
  readonly seed?: number;
  /** Epoch number: each epoch has its own order, a function of (seed, epoch). Default 0. */
  readonly epoch?: number;
  /** Drop a last, smaller batch. Default false. */
  readonly dropLast?: boolean;
  /** Batches read ahead while the consumer works (reading and decoding overlap training). Default 2. */
  readonly prefetch?: number;
  /** Batches of this epoch to skip (to resume inside an epoch). Default 0. */
  readonly startBatch?: number;
}

/**
 * The order of one epoch: a permutation of 0..length−1 (every item exactly once), the same for the same seed and
 * epoch (Fisher–Yates driven by a generator seeded from both).
 */
export function epochOrder(length: number, seed: number, epoch: number, shuffle = true): Uint32Array {
  const order = new Uint32Array(length);
  for (let i = 0; i < length; i++) order[i] = i;
  if (!shuffle) return order;
  const rng = new Rng((Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(epoch + 1, 0x85ebca6b)) >>> 0);
  for (let i = length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    const t = order[i]!;
    order[i] = order[j]!;
    order[j] = t;
  }
  return order;
}

/** Number of batches in one epoch. */
export function batchCount(length: number, batchSize: number, dropLast = false): number {
  return dropLast ? Math.floor(length / batchSize) : Math.ceil(length / batchSize);
}

/**
 * One epoch of a source as an async iterable of batches, read `prefetch` batches ahead.
 *
 * ```ts
 * for await (const batch of batches(source, { batchSize: 256, seed: 1, epoch })) { ... }
 * ```
 */
export async function* batches(source: ImageSource, options: BatchOptions): AsyncGenerator<ImageBatch> {
  const { batchSize } = options;
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) throw invalidOption('batchSize', 'a positive integer', batchSize);
  const prefetch = options.prefetch ?? 2;
  if (!(Number.isInteger(prefetch) && prefetch >= 0)) throw invalidOption('prefetch', 'a non-negative integer', prefetch);
  const order = epochOrder(source.length, options.seed ?? 0, options.epoch ?? 0, options.shuffle ?? true);
  const count = batchCount(source.length, batchSize, options.dropLast ?? false);
  const start = options.startBatch ?? 0;
  if (!(Number.isInteger(start) && start >= 0 && start <= count)) throw invalidOption('startBatch', `an integer in [0, ${count}]`, start);
  const read = (b: number) => source.read(Array.from(order.subarray(b * batchSize, Math.min((b + 1) * batchSize, source.length))));
  const pending: Promise<ImageBatch>[] = [];
  let next = start;
  const fill = () => {
    while (next < count && pending.length <= prefetch) {
      const p = read(next++);
      p.catch(() => undefined); // surfaced when awaited below; avoids an unhandled rejection meanwhile
      pending.push(p);
    }
  };
  fill();
  while (pending.length > 0) {
    const batch = await pending.shift()!;
    fill();
    yield batch;
  }
}

/** Checks that a record file has a whole number of records; names the file otherwise. */
export function checkRecordSize(path: string, bytes: number, recordBytes: number, what: string): number {
  if (bytes === 0 || bytes % recordBytes !== 0) {
    throw new ByolError(
      'INVALID_DATA',
      `${path}: ${bytes} bytes is not a whole number of ${what} records of ${recordBytes} bytes (truncated or not a ${what} file)`,
      path,
    );
  }
  return bytes / recordBytes;
}
