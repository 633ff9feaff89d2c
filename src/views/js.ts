/**
 * The views computed in plain JavaScript on the CPU, image by image: the same operations as ops.ts, for the
 * backends whose tensors live in CPU memory (cpu, wasm, native), where tfjs's per-element broadcasting makes the
 * batched tensor form slow. Tests check that both forms agree.
 */
import { gaussianKernel, blurRadius, LUMA, resampleTaps } from './ops.js';
import type { ViewConfig, ViewsConfig } from './options.js';
import type { ImageParams } from './sample.js';

const clip01 = (v: number) => (v < 0 ? 0 : v > 1 ? 1 : v);

/** Crop, resize and flip one image: src is H×W×C, the result size×size×C. */
function resizeCrop(src: Float32Array, offset: number, w: number, c: number, p: ImageParams, config: ViewsConfig): Float32Array {
  const s = config.size;
  const { top, left, height, width } = p.crop;
  const rows = resampleTaps(top, height, s, config.interpolation);
  const cols = resampleTaps(left, width, s, config.interpolation, p.flip);
  const taps = rows.indices.length;
  // Vertical pass over the crop's columns only: tmp is s × width × c.
  const tmp = new Float32Array(s * width * c);
  for (let o = 0; o < s; o++) {
    for (let t = 0; t < taps; t++) {
      const wt = rows.weights[t]![o]!;
      if (wt === 0) continue;
      const srcRow = offset + (rows.indices[t]![o]! * w + left) * c;
      const dst = o * width * c;
      for (let k = 0; k < width * c; k++) tmp[dst + k]! += wt * src[srcRow + k]!;
    }
  }
  const out = new Float32Array(s * s * c);
  for (let o = 0; o < s; o++) {
    for (let q = 0; q < s; q++) {
      for (let t = 0; t < taps; t++) {
        const wt = cols.weights[t]![q]!;
        if (wt === 0) continue;
        const from = (o * width + (cols.indices[t]![q]! - left)) * c;
        const to = (o * s + q) * c;
        for (let ch = 0; ch < c; ch++) out[to + ch]! += wt * tmp[from + ch]!;
      }
    }
  }
  return out;
}

/** RGB → HSV → adjust → RGB for every pixel, TF's formulas (as rgbToHsv / hsvToRgb in ops.ts). */
function saturationHue(x: Float32Array, factor: number, shift: number): void {
  for (let i = 0; i < x.length; i += 3) {
    const r = x[i]!;
    const g = x[i + 1]!;
    const b = x[i + 2]!;
    const v = Math.max(r, g, b);
    const range = v - Math.min(r, g, b);
    let s = v > 0 ? range / v : 0;
    let h = 0;
    if (range > 0) {
      const norm = 1 / (6 * range);
      h = r === v ? norm * (g - b) : g === v ? norm * (b - r) + 2 / 6 : norm * (r - g) + 4 / 6;
      if (h < 0) h += 1;
    }
    s = clip01(s * factor);
    h = (((h + shift) % 1) + 1) % 1;
    const cc = s * v;
    const m = v - cc;
    const dh = h * 6;
    const xx = cc * (1 - Math.abs((dh % 2) - 1));
    const cat = Math.floor(dh);
    const rr = cat === 0 || cat === 5 ? cc : cat === 1 || cat === 4 ? xx : 0;
    const gg = cat === 1 || cat === 2 ? cc : cat === 0 || cat === 3 ? xx : 0;
    const bb = cat === 3 || cat === 4 ? cc : cat === 2 || cat === 5 ? xx : 0;
    x[i] = clip01(rr + m);
    x[i + 1] = clip01(gg + m);
    x[i + 2] = clip01(bb + m);
  }
}

function jitter(x: Float32Array, p: ImageParams): void {
  for (const op of p.order) {
    if (op === 0) {
      for (let i = 0; i < x.length; i++) x[i] = clip01(x[i]! + p.brightness);
    } else if (op === 1) {
      const mean = [0, 0, 0];
      for (let i = 0; i < x.length; i++) mean[i % 3]! += x[i]!;
      const pixels = x.length / 3;
      for (let ch = 0; ch < 3; ch++) mean[ch]! /= pixels;
      for (let i = 0; i < x.length; i++) x[i] = clip01(p.contrast * (x[i]! - mean[i % 3]!) + mean[i % 3]!);
    } else if (op === 2) saturationHue(x, p.saturation, 0);
    else saturationHue(x, 1, p.hue);
  }
}

/**
 * Separable Gaussian blur with zero padding ('SAME'), in place. Each pass adds shifted, weighted copies of whole
 * rows (contiguous memory). Taps beyond 6σ weigh under 1e-8 of the centre and are skipped.
 */
function blur(x: Float32Array, s: number, c: number, sigma: number, radius: number): void {
  const k = gaussianKernel(radius, sigma);
  const reach = Math.min(radius, Math.ceil(6 * sigma));
  const row = s * c;
  const tmp = new Float32Array(x.length);
  for (let r = 0; r < s; r++) {
    const dst = r * row;
    for (let t = -reach; t <= reach; t++) {
      const rr = r + t;
      if (rr < 0 || rr >= s) continue;
      const w = k[t + radius]!;
      const src = rr * row;
      for (let j = 0; j < row; j++) tmp[dst + j]! += w * x[src + j]!;
    }
  }
  x.fill(0);
  for (let r = 0; r < s; r++) {
    const base = r * row;
    for (let t = -reach; t <= reach; t++) {
      const w = k[t + radius]!;
      // out[q] += w · tmp[q + t] for the q where q + t is inside the row.
      const lo = Math.max(0, -t) * c;
      const hi = Math.min(s, s - t) * c;
      const shift = t * c;
      for (let j = lo; j < hi; j++) x[base + j]! += w * tmp[base + j + shift]!;
    }
  }
}

/**
 * One view of a batch held as N×H×W×C floats in [0, 1]; returns N×size×size×C normalized floats. Same order and
 * semantics as applyView.
 */
export function applyViewJs(
  images01: Float32Array,
  shape: readonly [number, number, number, number],
  params: readonly ImageParams[],
  config: ViewsConfig,
  view: ViewConfig,
): Float32Array {
  const [n, h, w, c] = shape;
  const s = config.size;
  const out = new Float32Array(n * s * s * c);
  const radius = blurRadius(s, view.blur.kernelFraction);
  for (let i = 0; i < n; i++) {
    const p = params[i]!;
    const x = resizeCrop(images01, i * h * w * c, w, c, p, config);
    if (config.interpolation === 'bicubic') for (let k = 0; k < x.length; k++) x[k] = clip01(x[k]!);
    if (c === 3 && p.jitter) jitter(x, p);
    if (c === 3 && p.grayscale) {
      for (let k = 0; k < x.length; k += 3) {
        const y = LUMA[0] * x[k]! + LUMA[1] * x[k + 1]! + LUMA[2] * x[k + 2]!;
        x[k] = x[k + 1] = x[k + 2] = y;
      }
    }
    if (p.blur && radius >= 1) blur(x, s, c, p.sigma, radius);
    if (p.solarize) for (let k = 0; k < x.length; k++) if (x[k]! >= view.solarize.threshold) x[k] = 1 - x[k]!;
    const base = i * s * s * c;
    for (let k = 0; k < x.length; k++) out[base + k] = (clip01(x[k]!) - config.mean[k % c]!) / config.std[k % c]!;
  }
  return out;
}
