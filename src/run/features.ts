import * as tf from '@tensorflow/tfjs-core';
import type { ImageSource } from '../data/source.js';
import { ByolError } from '../errors.js';
import type { ViewsConfig } from '../views/options.js';

/** How evaluation images reach the encoder: resized to the views' size and normalized as the views are. */
export interface EvalInput {
  readonly size: number;
  readonly channels: number;
  readonly mean: readonly number[];
  readonly std: readonly number[];
}

export function evalInputOf(views: ViewsConfig): EvalInput {
  return { size: views.size, channels: views.channels, mean: views.mean, std: views.std };
}

/**
 * Image bytes [N, H, W, C] as the encoder takes them: to [0, 1], resized (bilinear) to the input size when it differs,
 * normalized. Call inside tf.tidy.
 */
export function encoderInput(bytes: Uint8Array, shape: readonly [number, number, number, number], input: EvalInput): tf.Tensor4D {
  let x = tf.div(tf.tensor4d(bytes, [...shape], 'int32'), 255) as tf.Tensor4D;
  if (shape[1] !== input.size || shape[2] !== input.size) x = tf.image.resizeBilinear(x, [input.size, input.size]);
  return tf.div(tf.sub(x, tf.tensor1d([...input.mean])), tf.tensor1d([...input.std]));
}

export interface EncodedSet {
  /** [count, featureDim], float32. */
  readonly features: Float32Array;
  readonly featureDim: number;
  readonly labels: Int32Array | null;
  readonly ids: readonly string[];
}

/**
 * Encoder features of the first `count` images of a source (all when count exceeds it), in chunks: bytes → [0, 1] →
 * bilinear resize to the evaluation size when it differs → normalize → `encode`.
 */
/** Thrown by an evaluation asked to stop (Ctrl-C) between two chunks; nothing of it is kept. */
export class StopRequested extends Error {
  constructor() {
    super('stopped on request');
  }
}

export async function encodeSource(
  source: ImageSource,
  count: number,
  input: EvalInput,
  encode: (x: tf.Tensor4D) => tf.Tensor2D,
  chunk = 256,
  shouldStop: () => boolean = () => false,
): Promise<EncodedSet> {
  const c = source.imageShape[2];
  if (c !== input.channels) {
    throw new ByolError('INVALID_DATA', `${source.name}: images have ${c} channel(s), the encoder takes ${input.channels}`, source.name);
  }
  const n = Math.min(count, source.length);
  const parts: Float32Array[] = [];
  const labels: number[] = [];
  const ids: string[] = [];
  let hasLabels = true;
  let dim = 0;
  for (let start = 0; start < n; start += chunk) {
    if (shouldStop()) throw new StopRequested();
    const batch = await source.read(Array.from({ length: Math.min(chunk, n - start) }, (_, i) => start + i));
    if (batch.labels) labels.push(...batch.labels);
    else hasLabels = false;
    ids.push(...batch.ids);
    const f = tf.tidy(() => {
      return encode(encoderInput(batch.images, batch.shape, input));
    });
    dim = f.shape[1];
    parts.push((await f.data()) as Float32Array);
    f.dispose();
  }
  const features = new Float32Array(ids.length * dim);
  let at = 0;
  for (const p of parts) {
    features.set(p, at);
    at += p.length;
  }
  return { features, featureDim: dim, labels: hasLabels ? Int32Array.from(labels) : null, ids };
}

/** The features as a tensor [count, featureDim]. */
export function featureTensor(set: EncodedSet): tf.Tensor2D {
  return tf.tensor2d(set.features, [set.ids.length, set.featureDim]);
}

/** Labelled features: [count, featureDim] and one class per row. */
export interface LabelledFeatures {
  readonly features: tf.Tensor2D;
  readonly labels: Int32Array;
}

/**
 * Encodes the first `nTrain` images of `train` and the first `nTest` of `test` and hands both labelled feature sets
 * to `measure` (kNN, a linear probe), freeing them after. Errors name a source without labels.
 */
export async function measureFeatures<T>(
  train: ImageSource,
  nTrain: number,
  test: ImageSource,
  nTest: number,
  input: EvalInput,
  encode: (x: tf.Tensor4D) => tf.Tensor2D,
  measure: (train: LabelledFeatures, test: LabelledFeatures) => Promise<T>,
  shouldStop: () => boolean = () => false,
): Promise<T> {
  const a = await encodeSource(train, nTrain, input, encode, 256, shouldStop);
  const b = await encodeSource(test, nTest, input, encode, 256, shouldStop);
  if (shouldStop()) throw new StopRequested();
  for (const [set, source] of [[a, train], [b, test]] as const) {
    if (!set.labels) throw new ByolError('INVALID_DATA', `${source.name}: evaluation needs labels`, 'dataset');
  }
  const [fa, fb] = [featureTensor(a), featureTensor(b)];
  try {
    return await measure({ features: fa, labels: a.labels! }, { features: fb, labels: b.labels! });
  } finally {
    tf.dispose([fa, fb]);
  }
}
