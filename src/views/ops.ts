/**
 * Batched image operations with per-image parameters, on float images in [0, 1], NHWC. Each is a pure function
 * of its inputs; the random choices come from sample.ts.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { CropBox } from './sample.js';
import type { Interpolation } from './options.js';

/** Keys' cubic convolution kernel with a = −0.5 (TF's bicubic resize). */
function keys(t: number): number {
  const a = -0.5;
  const x = Math.abs(t);
  if (x <= 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0;
}

/**
 * Source taps along one axis for resizing the window [start, start + length) to `size` samples with half-pixel
 * centres (TF2 / PyTorch `align_corners=False`): per output position, the source indices (clamped to the window)
 * and their weights. `reverse` mirrors the output (a horizontal flip).
 */
export function resampleTaps(
  start: number,
  length: number,
  size: number,
  interpolation: Interpolation,
  reverse = false,
): { indices: number[][]; weights: number[][] } {
  const taps = interpolation === 'bilinear' ? 2 : 4;
  const indices: number[][] = Array.from({ length: taps }, () => new Array<number>(size));
  const weights: number[][] = Array.from({ length: taps }, () => new Array<number>(size));
  const clamp = (i: number) => Math.min(Math.max(i, start), start + length - 1);
  for (let o = 0; o < size; o++) {
    const src = start + ((o + 0.5) * length) / size - 0.5;
    const base = Math.floor(src);
    const frac = src - base;
    const slot = reverse ? size - 1 - o : o;
    if (interpolation === 'bilinear') {
      indices[0]![slot] = clamp(base);
      weights[0]![slot] = 1 - frac;
      indices[1]![slot] = clamp(base + 1);
      weights[1]![slot] = frac;
    } else {
      for (let t = 0; t < 4; t++) {
        indices[t]![slot] = clamp(base - 1 + t);
        weights[t]![slot] = keys(frac - (t - 1));
      }
    }
  }
  return { indices, weights };
}

/**
 * Crops each image to its box, resizes it to size × size (bilinear or bicubic, separable) and flips it
 * horizontally where asked, in two batched gather passes.
 */
export function resizedCrops(
  images: tf.Tensor4D,
  boxes: readonly CropBox[],
  flips: readonly boolean[],
  size: number,
  interpolation: Interpolation,
): tf.Tensor4D {
  const [n, h, w, c] = images.shape;
  const rows = boxes.map((b) => resampleTaps(b.top, b.height, size, interpolation));
  const cols = boxes.map((b, i) => resampleTaps(b.left, b.width, size, interpolation, flips[i]));
  const taps = rows[0]!.indices.length;
  return tf.tidy(() => {
    // Rows of all images stacked: image i's row r is row i·extent + r. (A plain axis-0 gather: tfjs-backend-wasm
    // 4.22 computes gathers with batchDims wrongly.)
    const pass = (stacked: tf.Tensor2D, extent: number, tapsOf: typeof rows): tf.Tensor2D => {
      let sum: tf.Tensor2D | null = null;
      for (let t = 0; t < taps; t++) {
        const idx = tf.tensor1d(tapsOf.flatMap((r, i) => r.indices[t]!.map((k) => i * extent + k)), 'int32');
        const wt = tf.tensor2d(tapsOf.flatMap((r) => r.weights[t]!), [n * size, 1]);
        const term = tf.mul(tf.gather(stacked, idx), wt) as tf.Tensor2D;
        sum = sum ? (tf.add(sum, term) as tf.Tensor2D) : term;
      }
      return sum!;
    };
    // Vertical pass: [N·H, W·C] → [N·size, W·C].
    const vertical = pass(tf.reshape(images, [n * h, w * c]), h, rows);
    // Horizontal pass on the transposed images: [N·W, size·C] → [N·size, size·C].
    const across = tf.reshape(tf.transpose(tf.reshape(vertical, [n, size, w, c]), [0, 2, 1, 3]), [n * w, size * c]) as tf.Tensor2D;
    const horizontal = pass(across, w, cols);
    return tf.transpose(tf.reshape(horizontal, [n, size, size, c]), [0, 2, 1, 3]) as tf.Tensor4D;
  });
}

const perImage = (values: readonly number[]) => tf.tensor4d(values as number[], [values.length, 1, 1, 1]);

/** x + δ per image (TF `adjust_brightness`), clipped to [0, 1]. */
export function adjustBrightness(x: tf.Tensor4D, delta: readonly number[]): tf.Tensor4D {
  return tf.tidy(() => tf.clipByValue(tf.add(x, perImage(delta)), 0, 1) as tf.Tensor4D);
}

/** f·(x − μ) + μ with μ the mean of each channel of each image (TF `adjust_contrast`), clipped to [0, 1]. */
export function adjustContrast(x: tf.Tensor4D, factor: readonly number[]): tf.Tensor4D {
  return tf.tidy(() => {
    const mean = tf.mean(x, [1, 2], true);
    return tf.clipByValue(tf.add(tf.mul(tf.sub(x, mean), perImage(factor)), mean), 0, 1) as tf.Tensor4D;
  });
}

/** RGB → HSV with TF's formulas (hue in turns, [0, 1)). Inputs and outputs are [N, H, W] planes. */
export function rgbToHsv(r: tf.Tensor, g: tf.Tensor, b: tf.Tensor): [tf.Tensor, tf.Tensor, tf.Tensor] {
  return tf.tidy(() => {
    const v = tf.maximum(tf.maximum(r, g), b);
    const range = tf.sub(v, tf.minimum(tf.minimum(r, g), b));
    const s = tf.where(tf.greater(v, 0), tf.div(range, tf.maximum(v, 1e-30)), tf.zerosLike(v));
    const norm = tf.where(tf.notEqual(range, 0), tf.div(1, tf.mul(6, tf.maximum(range, 1e-30))), tf.fill(range.shape, 1e9));
    const hr = tf.mul(norm, tf.sub(g, b));
    const hg = tf.add(tf.mul(norm, tf.sub(b, r)), 2 / 6);
    const hb = tf.add(tf.mul(norm, tf.sub(r, g)), 4 / 6);
    let h = tf.where(tf.equal(r, v), hr, tf.where(tf.equal(g, v), hg, hb));
    h = tf.mul(h, tf.cast(tf.greater(range, 0), 'float32'));
    h = tf.add(h, tf.cast(tf.less(h, 0), 'float32'));
    return [h, s, v];
  });
}

/** HSV → RGB with TF's formulas. */
export function hsvToRgb(h: tf.Tensor, s: tf.Tensor, v: tf.Tensor): [tf.Tensor, tf.Tensor, tf.Tensor] {
  return tf.tidy(() => {
    const c = tf.mul(s, v);
    const m = tf.sub(v, c);
    const dh = tf.mul(tf.mod(h, 1), 6);
    const x = tf.mul(c, tf.sub(1, tf.abs(tf.sub(tf.mod(dh, 2), 1))));
    const cat = tf.floor(dh);
    const zero = tf.zerosLike(c);
    const is = (...ks: number[]) => ks.map((k) => tf.equal(cat, k)).reduce((a, b) => tf.logicalOr(a, b));
    const r = tf.add(tf.where(is(0, 5), c, tf.where(is(1, 4), x, zero)), m);
    const g = tf.add(tf.where(is(1, 2), c, tf.where(is(0, 3), x, zero)), m);
    const b = tf.add(tf.where(is(3, 4), c, tf.where(is(2, 5), x, zero)), m);
    return [r, g, b];
  });
}

/**
 * Saturation × factor (clipped to [0, 1]) and hue + shift (mod 1) per image, in one HSV round trip (TF
 * `adjust_saturation`, `adjust_hue`), then clipped to [0, 1]. Factor 1 and shift 0 leave an image as it was.
 */
export function adjustSaturationHue(x: tf.Tensor4D, saturation: readonly number[], hue: readonly number[]): tf.Tensor4D {
  return tf.tidy(() => {
    const n = x.shape[0];
    const [r, g, b] = tf.unstack(x, 3);
    const [h, s, v] = rgbToHsv(r!, g!, b!);
    const f = tf.tensor3d(saturation as number[], [n, 1, 1]);
    const d = tf.tensor3d(hue as number[], [n, 1, 1]);
    const rgb = hsvToRgb(tf.mod(tf.add(h, d), 1), tf.clipByValue(tf.mul(s, f), 0, 1), v);
    return tf.clipByValue(tf.stack(rgb, 3), 0, 1) as tf.Tensor4D;
  });
}

/** Luma weights of the official `_to_grayscale` (ITU-R 601). */
export const LUMA = [0.2989, 0.587, 0.114] as const;

/** Replaces the selected images by their luma, repeated on the three channels. */
export function grayscale(x: tf.Tensor4D, mask: readonly boolean[]): tf.Tensor4D {
  return tf.tidy(() => {
    const luma = tf.sum(tf.mul(x, tf.tensor1d(LUMA as unknown as number[])), 3, true);
    return tf.where(tf.cast(perImage(mask.map(Number)), 'bool'), tf.tile(luma, [1, 1, 1, 3]), x) as tf.Tensor4D;
  });
}

/** The normalized 1-D Gaussian of the official code: radius ⌊k/2⌋ for k = side × fraction, σ in pixels. */
export function gaussianKernel(radius: number, sigma: number): number[] {
  const raw = Array.from({ length: 2 * radius + 1 }, (_, i) => Math.exp(-((i - radius) ** 2) / (2 * sigma * sigma)));
  const sum = raw.reduce((a, b) => a + b, 0);
  return raw.map((v) => v / sum);
}

/** Blur radius for an image side, as the official code: ⌊side × fraction / 2⌋ (11, a 23-px kernel, at 224). */
export function blurRadius(side: number, fraction: number): number {
  return Math.floor((side * fraction) / 2);
}

/**
 * Separable Gaussian blur of the selected images, each with its own σ, zero-padded ('SAME', as the official code).
 * The selected images are stacked as channels of one image so that two depthwise convolutions blur them all.
 */
export function gaussianBlur(x: tf.Tensor4D, mask: readonly boolean[], sigmas: readonly number[], radius: number): tf.Tensor4D {
  const chosen = mask.flatMap((m, i) => (m ? [i] : []));
  if (chosen.length === 0 || radius < 1) return tf.clone(x);
  return tf.tidy(() => {
    const [n, h, w, c] = x.shape;
    const m = chosen.length;
    const sub = tf.gather(x, tf.tensor1d(chosen, 'int32'));
    const asChannels = tf.reshape(tf.transpose(sub, [1, 2, 0, 3]), [1, h, w, m * c]) as tf.Tensor4D;
    const k = 2 * radius + 1;
    const weights = chosen.flatMap((i) => gaussianKernel(radius, sigmas[i]!));
    // [k, m] → per channel: [k, m·c], kernel of image j on its c channels.
    const perChannel = tf.reshape(tf.tile(tf.reshape(tf.transpose(tf.tensor2d(weights, [m, k])), [k, m, 1]), [1, 1, c]), [k, m * c]);
    const vertical = tf.depthwiseConv2d(asChannels, tf.reshape(perChannel, [k, 1, m * c, 1]) as tf.Tensor4D, 1, 'same');
    const both = tf.depthwiseConv2d(vertical, tf.reshape(perChannel, [1, k, m * c, 1]) as tf.Tensor4D, 1, 'same');
    const blurred = tf.transpose(tf.reshape(both, [h, w, m, c]), [2, 0, 1, 3]);
    // Put the blurred images back in place: index n + j for the j-th chosen image, i otherwise.
    const where = new Array<number>(n).fill(0).map((_, i) => i);
    chosen.forEach((i, j) => (where[i] = n + j));
    return tf.gather(tf.concat([x, blurred]), tf.tensor1d(where, 'int32')) as tf.Tensor4D;
  });
}

/** x → 1 − x where x ≥ threshold, for the selected images (official `solarize`). */
export function solarize(x: tf.Tensor4D, mask: readonly boolean[], threshold: number): tf.Tensor4D {
  return tf.tidy(() => {
    const flip = tf.logicalAnd(tf.cast(perImage(mask.map(Number)), 'bool'), tf.greaterEqual(x, threshold));
    return tf.where(flip, tf.sub(1, x), x) as tf.Tensor4D;
  });
}

/** (x − mean) / std per channel. */
export function normalize(x: tf.Tensor4D, mean: readonly number[], std: readonly number[]): tf.Tensor4D {
  return tf.tidy(() => tf.div(tf.sub(x, tf.tensor1d(mean as number[])), tf.tensor1d(std as number[])) as tf.Tensor4D);
}
