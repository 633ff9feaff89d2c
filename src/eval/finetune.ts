/**
 * Semi-supervised evaluation (paper §4.2, Table 2; App. C): the whole encoder fine-tuned with a linear head on a small,
 * class-balanced labelled subset, then top-1 / top-5 on the test images. Browser-safe.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { invalidOption } from '../errors.js';
import { cloneArchitecture } from '../nets/encoder.js';
import { ablate, type ViewsConfig } from '../views/options.js';
import { normalize } from '../views/ops.js';
import { Rng } from '../views/rng.js';
import { toUnitRange, ViewSampler } from '../views/views.js';
import { leanVariableGrads } from '../train/gradients.js';
import { Sgd } from '../train/optimizer.js';

/**
 * `count` indices of `labels`, as even across the classes as it can be (⌊count/C⌋ each, one more for the first
 * count mod C classes), drawn within each class by a generator seeded with `seed`; sorted. The paper's 1 % and 10 %
 * subsets are class-balanced (App. C).
 */
export function balancedSubset(labels: Int32Array, count: number, seed = 0): Int32Array {
  const classes = labels.reduce((m, l) => Math.max(m, l), -1) + 1;
  if (!(Number.isInteger(count) && count >= classes && count <= labels.length)) throw invalidOption('count', `an integer from ${classes} (one per class) to ${labels.length}`, count);
  const byClass: number[][] = Array.from({ length: classes }, () => []);
  labels.forEach((l, i) => byClass[l]!.push(i));
  const rng = new Rng(seed);
  const out: number[] = [];
  byClass.forEach((members, c) => {
    const want = Math.floor(count / classes) + (c < count % classes ? 1 : 0);
    if (members.length < want) throw invalidOption('count', `at most ${members.length} images of class ${c}`, want);
    for (let i = members.length - 1; i > 0; i--) {
      const j = rng.int(0, i);
      [members[i], members[j]] = [members[j]!, members[i]!];
    }
    out.push(...members.slice(0, want));
  });
  return Int32Array.from(out.sort((a, b) => a - b));
}

export interface LabelledImages {
  /** [N, H, W, C] pixels 0–255. */
  readonly images: Int32Array | Uint8Array;
  readonly shape: readonly [number, number, number, number];
  readonly labels: Int32Array;
}

export interface FinetuneOptions {
  /** Views of the encoder's input (size, mean, std); fine-tuning uses its crop and flip only (App. C). */
  readonly views: ViewsConfig;
  /** Passes over the labelled subset. Default 30 (a small budget; the paper fine-tunes for 30 or 50 epochs, App. C). */
  readonly epochs?: number;
  /** Default 64. */
  readonly batchSize?: number;
  /** SGD with Nesterov momentum 0.9, no weight decay (App. C). Default 0.01. */
  readonly learningRate?: number;
  /** Seeds the head's initial weights, the batch order and the views. Default 0. */
  readonly seed?: number;
}

export interface FinetuneResult {
  readonly top1: number;
  readonly top5: number;
}

/**
 * Fine-tunes a copy of `encoder` (the given model is not changed) with a linear head on `train`, then classifies
 * `test` (eval mode, centre images as they are). Returns top-1 and top-5 accuracy in [0, 1].
 */
export async function finetune(encoder: tfl.LayersModel, train: LabelledImages, test: LabelledImages, options: FinetuneOptions): Promise<FinetuneResult> {
  const epochs = options.epochs ?? 30;
  const batchSize = Math.min(options.batchSize ?? 64, train.labels.length);
  const lr = options.learningRate ?? 0.01;
  const seed = options.seed ?? 0;
  if (!(Number.isInteger(epochs) && epochs >= 1)) throw invalidOption('epochs', 'a positive integer', epochs);
  if (!(Number.isInteger(batchSize) && batchSize >= 2)) throw invalidOption('batchSize', 'an integer ≥ 2 (batch norm)', batchSize);
  if (!(lr > 0)) throw invalidOption('learningRate', 'a number > 0', lr);
  const classes = Math.max(...train.labels, ...test.labels) + 1;
  const model = cloneArchitecture(encoder);
  model.setWeights(encoder.getWeights());
  const dim = model.outputs[0]!.shape[1] as number;
  const headRng = new Rng(seed + 1);
  const limit = Math.sqrt(1 / dim);
  // Variables copy their initial values: the temporaries go with the tidy.
  const w = tf.tidy(() => tf.variable(tf.tensor2d(Float32Array.from({ length: dim * classes }, () => headRng.uniform(-limit, limit)), [dim, classes])));
  const b = tf.tidy(() => tf.variable(tf.zeros([classes])));
  const sampler = new ViewSampler(ablate(options.views, 'crop-flip'), { seed });
  const vars = [...model.trainableWeights.map((v) => (v as unknown as { read(): tf.Variable }).read()), w, b];
  // torch.optim.SGD's Nesterov form, no weight decay (App. C); byol's own, which frees all it holds.
  const optimizer = new Sgd(vars, { momentum: 0.9, weightDecay: 0, nesterov: true }, () => false);
  const [, h, wd, c] = train.shape;
  const per = h * wd * c;
  const order = Int32Array.from(train.labels, (_, i) => i);
  const rng = new Rng(seed + 2);
  try {
    for (let epoch = 0; epoch < epochs; epoch++) {
      for (let i = order.length - 1; i > 0; i--) {
        const j = rng.int(0, i);
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      for (let start = 0; start + batchSize <= order.length; start += batchSize) {
        const idx = order.subarray(start, start + batchSize);
        const pixels = new Int32Array(batchSize * per);
        idx.forEach((k, r) => pixels.set(train.images.subarray(k * per, (k + 1) * per), r * per));
        const x = tf.tensor4d(pixels, [batchSize, h, wd, c], 'int32');
        const [view, other] = sampler.views(x);
        const y = tf.tidy(() => tf.oneHot(tf.tensor1d(Int32Array.from(idx, (k) => train.labels[k]!), 'int32'), classes));
        const { value, grads } = leanVariableGrads(() => {
          const f = model.apply(view, { training: true }) as tf.Tensor2D;
          return tf.losses.softmaxCrossEntropy(y, tf.add(tf.matMul(f, w), b)) as tf.Scalar;
        }, vars);
        optimizer.apply(vars.map((v) => grads[v.name]!), lr);
        tf.dispose([value, ...Object.values(grads)]);
        tf.dispose([x, view, other, y]);
        await tf.nextFrame();
      }
    }
    // Test: the images as they are (no crop), normalized as the views do.
    const n = test.labels.length;
    let top1 = 0;
    let top5 = 0;
    const [, th, tw, tc] = test.shape;
    const tper = th * tw * tc;
    for (let start = 0; start < n; start += 256) {
      const m = Math.min(256, n - start);
      const { values, indices } = tf.tidy(() => {
        const x = tf.tensor4d(Int32Array.from(test.images.subarray(start * tper, (start + m) * tper)), [m, th, tw, tc], 'int32');
        const input = normalize(toUnitRange(x), options.views.mean, options.views.std);
        const logits = tf.add(tf.matMul(model.predict(input) as tf.Tensor2D, w), b);
        return tf.topk(logits, Math.min(5, classes));
      });
      const top = await indices.data();
      tf.dispose([values, indices]);
      const k = Math.min(5, classes);
      for (let i = 0; i < m; i++) {
        const label = test.labels[start + i]!;
        if (top[i * k] === label) top1++;
        for (let j = 0; j < k; j++) if (top[i * k + j] === label) top5++;
      }
    }
    return { top1: top1 / n, top5: top5 / n };
  } finally {
    optimizer.dispose();
    model.dispose();
    tf.dispose([w, b]);
  }
}
