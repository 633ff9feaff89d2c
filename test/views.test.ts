import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import {
  ByolError,
  Rng,
  VIEW_PRESETS,
  ViewSampler,
  applyView,
  gaussianKernel,
  blurRadius,
  resolveViewsConfig,
  sampleCrop,
  type ImageParams,
  type ViewsConfig,
} from '../src/index.js';
import { applyViewJs } from '../src/views/js.js';
import { assertClose, assertNoLeak } from './helpers.js';

/** A config that changes nothing by itself: output size = input size, identity normalization. */
function plainConfig(size: number, patch: Partial<ViewsConfig> = {}): ViewsConfig {
  return { ...VIEW_PRESETS.imagenet, size, mean: [0, 0, 0], std: [1, 1, 1], ...patch };
}

function params(h: number, w: number, patch: Partial<ImageParams> = {}): ImageParams {
  return {
    crop: { top: 0, left: 0, height: h, width: w },
    flip: false,
    jitter: false,
    order: [0, 1, 2, 3],
    brightness: 0,
    contrast: 1,
    saturation: 1,
    hue: 0,
    grayscale: false,
    blur: false,
    sigma: 1,
    solarize: false,
    ...patch,
  };
}

/** Runs one image (H×W×C values) through both engines and checks they agree; returns the result. */
function bothEngines(pixels: number[], shape: [number, number, number], p: ImageParams, config: ViewsConfig, viewIndex = 0): Float32Array {
  const [h, w, c] = shape;
  const view = config.views[viewIndex]!;
  const x = tf.tensor4d(pixels, [1, h, w, c]);
  const t = applyView(x, [p], config, view);
  const viaTensor = t.dataSync() as Float32Array;
  const viaJs = applyViewJs(Float32Array.from(pixels), [1, h, w, c], [p], config, view);
  assertClose(viaJs, viaTensor, 2e-5, 2e-5, 'js vs tensor engine');
  tf.dispose([x, t]);
  return viaJs;
}

const solid = (rgb: number[], n: number) => Array.from({ length: n }, () => rgb).flat();

test('identity choices give the image back exactly (crop of the whole image at its own size)', () => {
  const px = Array.from({ length: 5 * 5 * 3 }, (_, i) => ((i * 37) % 101) / 100);
  assertClose(bothEngines(px, [5, 5, 3], params(5, 5), plainConfig(5)), px, 1e-6, 0);
});

test('hue shift: pure red + 1/3 turn is pure green, − 1/3 is pure blue', () => {
  const red = solid([1, 0, 0], 4);
  assertClose(bothEngines(red, [2, 2, 3], params(2, 2, { jitter: true, hue: 1 / 3, order: [3, 0, 1, 2] }), plainConfig(2)), solid([0, 1, 0], 4), 1e-5, 0);
  assertClose(bothEngines(red, [2, 2, 3], params(2, 2, { jitter: true, hue: -1 / 3, order: [3, 2, 1, 0] }), plainConfig(2)), solid([0, 0, 1], 4), 1e-5, 0);
});

test('saturation factor 0 turns a colour into its HSV value on every channel', () => {
  const out = bothEngines(solid([0.8, 0.4, 0.2], 4), [2, 2, 3], params(2, 2, { jitter: true, saturation: 0, order: [2, 0, 1, 3] }), plainConfig(2));
  assertClose(out, solid([0.8, 0.8, 0.8], 4), 1e-6, 0);
});

test('contrast scales each channel around its own mean; brightness adds and clips', () => {
  const px = [0.1, 0.2, 0.9, 0.3, 0.6, 0.5, 0.5, 0.4, 0.1, 0.7, 0.8, 0.3];
  const means = [0, 1, 2].map((c) => (px[c]! + px[c + 3]! + px[c + 6]! + px[c + 9]!) / 4);
  const f = 0.5;
  const expected = px.map((v, i) => f * (v - means[i % 3]!) + means[i % 3]!);
  assertClose(bothEngines(px, [2, 2, 3], params(2, 2, { jitter: true, contrast: f, order: [1, 0, 2, 3] }), plainConfig(2)), expected, 1e-6, 0);
  const bright = px.map((v) => Math.min(1, v + 0.3));
  assertClose(bothEngines(px, [2, 2, 3], params(2, 2, { jitter: true, brightness: 0.3 }), plainConfig(2)), bright, 1e-6, 0);
});

test('grayscale of known colours uses the luma weights 0.2989, 0.5870, 0.1140', () => {
  const px = [1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1];
  const expected = [0.2989, 0.587, 0.114, 0.9999].flatMap((y) => [y, y, y]);
  assertClose(bothEngines(px, [2, 2, 3], params(2, 2, { grayscale: true }), plainConfig(2)), expected, 1e-6, 0);
});

test('solarize: x → 1 − x where x ≥ 0.5, below unchanged', () => {
  const px = [0.2, 0.5, 0.7, 0.49, 0.51, 1, 0, 0.25, 0.75, 0.999, 0.5001, 0.4999];
  const expected = [0.2, 0.5, 0.3, 0.49, 0.49, 0, 0, 0.25, 0.25, 0.001, 0.4999, 0.4999];
  assertClose(bothEngines(px, [2, 2, 3], params(2, 2, { solarize: true }), plainConfig(2)), expected, 1e-6, 0);
});

test('blur kernel: sums to 1, is the Gaussian at σ, 23 px at 224; an impulse spreads as its outer product', () => {
  assert.equal(2 * blurRadius(224, 0.1) + 1, 23);
  for (const sigma of [0.1, 0.7, 2]) {
    const k = gaussianKernel(5, sigma);
    assertClose(k.reduce((a, b) => a + b, 0), 1, 1e-12, 0);
    const z = Array.from({ length: 11 }, (_, i) => Math.exp(-((i - 5) ** 2) / (2 * sigma * sigma))).reduce((a, b) => a + b, 0);
    k.forEach((v, i) => assertClose(v, Math.exp(-((i - 5) ** 2) / (2 * sigma * sigma)) / z, 1e-12, 0));
  }
  // 50 px image, kernel fraction 0.1 → radius 2; an impulse in the middle of one channel.
  const s = 50;
  const px = new Array<number>(s * s * 3).fill(0);
  px[(25 * s + 25) * 3 + 1] = 1;
  const config = plainConfig(s);
  const out = bothEngines(px, [s, s, 3], params(s, s, { blur: true, sigma: 1.3 }), config);
  const k = gaussianKernel(2, 1.3);
  for (let dy = -2; dy <= 2; dy++) {
    for (let dx = -2; dx <= 2; dx++) assertClose(out[((25 + dy) * s + 25 + dx) * 3 + 1]!, k[dy + 2]! * k[dx + 2]!, 1e-6, 0, `(${dy},${dx})`);
  }
  assertClose(out.reduce((a, b) => a + b, 0), 1, 1e-5, 0, 'mass is kept away from the border');
});

test('crop, resize and flip: a sub-window at its own size is that window; flip reverses columns; a ramp stays a ramp', () => {
  const h = 6;
  const w = 8;
  const px = Array.from({ length: h * w * 3 }, (_, i) => i / (h * w * 3));
  const at = (r: number, c: number, ch: number) => px[(r * w + c) * 3 + ch]!;
  const window = bothEngines(px, [h, w, 3], params(h, w, { crop: { top: 1, left: 2, height: 4, width: 4 } }), plainConfig(4));
  const expected = [];
  for (let r = 0; r < 4; r++) for (let c = 0; c < 4; c++) for (let ch = 0; ch < 3; ch++) expected.push(at(r + 1, c + 2, ch));
  assertClose(window, expected, 1e-6, 0);
  const flipped = bothEngines(px, [h, w, 3], params(h, w, { crop: { top: 1, left: 2, height: 4, width: 4 }, flip: true }), plainConfig(4));
  const mirrored = [];
  for (let r = 0; r < 4; r++) for (let c = 3; c >= 0; c--) for (let ch = 0; ch < 3; ch++) mirrored.push(at(r + 1, c + 2, ch));
  assertClose(flipped, mirrored, 1e-6, 0);
  // A horizontal ramp upscaled ×2 (bilinear and bicubic) is still a ramp away from the borders: constant steps.
  const ramp = Array.from({ length: 8 * 8 }, (_, i) => (i % 8) / 7).flatMap((v) => [v, v, v]);
  for (const interpolation of ['bilinear', 'bicubic'] as const) {
    const up = bothEngines(ramp, [8, 8, 3], params(8, 8), plainConfig(16, { interpolation }));
    const row = Array.from({ length: 16 }, (_, q) => up[(5 * 16 + q) * 3]!);
    for (let q = 3; q < 12; q++) assertClose(row[q + 1]! - row[q]!, 1 / 14, 1e-5, 0, `${interpolation} step ${q}`);
  }
});

test('random choices through both engines agree (full imagenet-style pipeline with blur and solarize)', () => {
  const config = resolveViewsConfig('imagenet', { size: 20, views: [{ blur: { kernelFraction: 0.3 } }, { solarize: { prob: 0.5 } }] });
  const sampler = new ViewSampler(config, { seed: 4 });
  const n = 6;
  const raw = tf.randomUniform([n, 30, 26, 3], 0, 1, 'float32', 3) as tf.Tensor4D;
  const data = raw.dataSync() as Float32Array;
  for (const interpolation of ['bilinear', 'bicubic'] as const) {
    const c = { ...config, interpolation };
    const [p1, p2] = sampler.drawParams(n, 30, 26);
    for (const [p, v] of [[p1, c.views[0]], [p2, c.views[1]]] as const) {
      const t = applyView(raw, p, c, v);
      assertClose(applyViewJs(data, [n, 30, 26, 3], p, c, v), t.dataSync(), 5e-5, 5e-5, interpolation);
      t.dispose();
    }
  }
  raw.dispose();
});

test('crop boxes always lie inside the image, for any image shape', () => {
  const rng = new Rng(9);
  const crop = VIEW_PRESETS.imagenet.crop;
  for (const [h, w] of [[224, 224], [3, 50], [50, 3], [1, 1], [17, 1000], [480, 640]] as const) {
    for (let i = 0; i < 2000; i++) {
      const b = sampleCrop(h, w, crop, rng);
      assert.ok(b.top >= 0 && b.left >= 0 && b.height >= 1 && b.width >= 1 && b.top + b.height <= h && b.left + b.width <= w, `${h}×${w}: ${JSON.stringify(b)}`);
    }
  }
});

/** Two-sample Kolmogorov–Smirnov statistic. */
function ks(a: number[], b: number[]): number {
  const x = [...a].sort((p, q) => p - q);
  const y = [...b].sort((p, q) => p - q);
  let i = 0;
  let j = 0;
  let d = 0;
  while (i < x.length && j < y.length) {
    if (x[i]! <= y[j]!) i++;
    else j++;
    d = Math.max(d, Math.abs(i / x.length - j / y.length));
  }
  return d;
}

test('crop area and aspect distributions over 10 000 draws match the specification (two-sample KS)', () => {
  const H = 1000;
  const W = 1000;
  const crop = VIEW_PRESETS.imagenet.crop;
  const rng = new Rng(5);
  const ours = Array.from({ length: 10_000 }, () => sampleCrop(H, W, crop, rng));
  // An independent simulation of the specification: area ~ U(0.08, 1)·HW, log ratio ~ U(log 3/4, log 4/3),
  // accepted if it fits, up to 10 tries, else the whole (square) image.
  let seed = 12345;
  const u = () => ((seed = (Math.imul(seed, 48271) >>> 0) % 2147483647), seed / 2147483647);
  const spec = Array.from({ length: 10_000 }, () => {
    for (let t = 0; t < 10; t++) {
      const area = H * W * (0.08 + 0.92 * u());
      const ratio = Math.exp(Math.log(3 / 4) + (Math.log(4 / 3) - Math.log(3 / 4)) * u());
      const w = Math.round(Math.sqrt(area * ratio));
      const h = Math.round(Math.sqrt(area / ratio));
      if (w <= W && h <= H) return { height: h, width: w };
    }
    return { height: H, width: W };
  });
  const critical = 1.95 * Math.sqrt(2 / 10_000); // α = 0.001
  const area = (b: { height: number; width: number }) => (b.height * b.width) / (H * W);
  const logRatio = (b: { height: number; width: number }) => Math.log(b.width / b.height);
  assert.ok(ks(ours.map(area), spec.map(area)) < critical, 'area');
  assert.ok(ks(ours.map(logRatio), spec.map(logRatio)) < critical, 'aspect');
  // And against the plain uniform laws where no rejection happens (area ≤ 0.5 always fits here).
  const small = ours.filter((b) => area(b) <= 0.5).map(area);
  const uniform = small.map((_, i) => 0.08 + (0.42 * (i + 0.5)) / small.length);
  assert.ok(ks(small, uniform) < 1.95 * Math.sqrt(2 / small.length), 'area below 0.5 is uniform');
});

test('the asymmetric probabilities of T and T′ hold over 20 000 draws, within ±2 %', () => {
  const sampler = new ViewSampler('imagenet', { seed: 11 });
  const [t, tp] = sampler.drawParams(20_000, 64, 64);
  const rate = (ps: ImageParams[], f: (p: ImageParams) => boolean) => ps.filter(f).length / ps.length;
  const expect = (got: number, want: number, what: string) => assert.ok(Math.abs(got - want) <= 0.02, `${what}: ${got} vs ${want}`);
  for (const [ps, blur, sol] of [[t, 1, 0], [tp, 0.1, 0.2]] as const) {
    expect(rate(ps, (p) => p.flip), 0.5, 'flip');
    expect(rate(ps, (p) => p.jitter), 0.8, 'jitter');
    expect(rate(ps, (p) => p.grayscale), 0.2, 'grayscale');
    expect(rate(ps, (p) => p.blur), blur, 'blur');
    expect(rate(ps, (p) => p.solarize), sol, 'solarize');
    const b = ps.map((p) => p.brightness);
    assert.ok(Math.min(...b) >= -0.4 && Math.max(...b) <= 0.4);
    const s = ps.map((p) => p.sigma);
    assert.ok(Math.min(...s) >= 0.1 && Math.max(...s) <= 2);
    // Every order of the four jitter operations shows up, about equally often.
    const orders = new Map<string, number>();
    for (const p of ps) orders.set(p.order.join(), (orders.get(p.order.join()) ?? 0) + 1);
    assert.equal(orders.size, 24);
  }
});

test('the same seed gives identical views; another seed differs; a saved generator state replays', async () => {
  const images = tf.randomUniform([4, 40, 40, 3], 0, 255, 'int32', 2) as tf.Tensor4D;
  for (const engine of ['js', 'tensor'] as const) {
    const a = new ViewSampler('cifar', { seed: 7, engine });
    const b = new ViewSampler('cifar', { seed: 7, engine });
    const c = new ViewSampler('cifar', { seed: 8, engine });
    const va = a.views(images);
    const vb = b.views(images);
    const vc = c.views(images);
    assert.deepEqual(Array.from(va[0].dataSync()), Array.from(vb[0].dataSync()));
    assert.deepEqual(Array.from(va[1].dataSync()), Array.from(vb[1].dataSync()));
    assert.notDeepEqual(Array.from(va[0].dataSync()), Array.from(vc[0].dataSync()));
    const state = a.rngState;
    const next = a.views(images);
    a.setRngState(state);
    const again = a.views(images);
    assert.deepEqual(Array.from(again[1].dataSync()), Array.from(next[1].dataSync()));
    tf.dispose([...va, ...vb, ...vc, ...next, ...again]);
    await assertNoLeak(() => tf.dispose(a.views(images)), `${engine} views`);
  }
  images.dispose();
});

test('views have the preset\'s size, are normalized, and cover every preset and ablation', () => {
  const rgb = tf.randomUniform([3, 48, 40, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
  const grey = tf.randomUniform([3, 28, 28, 1], 0, 255, 'int32', 1) as tf.Tensor4D;
  const cases: [ViewSampler, tf.Tensor4D, number[]][] = [
    [new ViewSampler('imagenet', { seed: 1, overrides: { size: 24 } }), rgb, [3, 24, 24, 3]],
    [new ViewSampler('cifar', { seed: 1 }), rgb, [3, 32, 32, 3]],
    [new ViewSampler('grey', { seed: 1 }), grey, [3, 28, 28, 1]],
    ...(['crop-only', 'crop-flip', 'no-color', 'no-blur', 'symmetric'] as const).map(
      (ablation) => [new ViewSampler('imagenet', { seed: 1, ablation, overrides: { size: 16 } }), rgb, [3, 16, 16, 3]] as [ViewSampler, tf.Tensor4D, number[]],
    ),
  ];
  for (const [s, x, shape] of cases) {
    const [v1, v2] = s.views(x);
    assert.deepEqual(v1.shape, shape);
    assert.deepEqual(v2.shape, shape);
    assert.ok(v1.dataSync().every(Number.isFinite));
    tf.dispose([v1, v2]);
  }
  assert.equal(VIEW_PRESETS.cifar.views[0].blur.prob, 0);
  const sym = resolveViewsConfig('imagenet', {}, 'symmetric');
  assert.deepEqual(sym.views[0].blur, sym.views[1].blur);
  assert.equal(sym.views[0].solarize.prob, 0.1);
  const cropOnly = resolveViewsConfig('imagenet', {}, 'crop-only');
  assert.deepEqual([cropOnly.views[1].flip, cropOnly.views[1].colorJitter.prob, cropOnly.views[1].blur.prob, cropOnly.views[1].solarize.prob], [0, 0, 0, 0]);
  tf.dispose([rgb, grey]);
});

test('bad options and inputs give typed errors naming them', () => {
  const invalid = (f: () => unknown, option: string) =>
    assert.throws(f, (e: unknown) => e instanceof ByolError && e.option === option, option);
  invalid(() => new ViewSampler('mnist' as never), 'preset');
  invalid(() => resolveViewsConfig('imagenet', { views: [{ flip: 1.5 }] }), 'views[0].flip');
  invalid(() => resolveViewsConfig('imagenet', { crop: { scale: [0.5, 0.1] } }), 'crop.scale');
  invalid(() => resolveViewsConfig('imagenet', { mean: [0.5] }), 'mean');
  invalid(() => resolveViewsConfig('grey', { views: [{ colorJitter: { prob: 0.8 } }] }), 'views[0].colorJitter.prob');
  invalid(() => resolveViewsConfig('imagenet', {}, 'no-crop' as never), 'ablation');
  invalid(() => new ViewSampler('cifar', { seed: -1 }), 'seed');
  const s = new ViewSampler('cifar', { seed: 1 });
  const grey = tf.zeros([2, 8, 8, 1]) as tf.Tensor4D;
  invalid(() => s.views(grey), 'images');
  invalid(() => s.views(tf.zeros([8, 8, 3]) as unknown as tf.Tensor4D), 'images');
  grey.dispose();
});

test('the tensor engine on the wasm backend gives the js engine\'s views', async () => {
  const { useBackend } = await import('../src/node.js');
  const config = resolveViewsConfig('imagenet', { size: 12, views: [{ blur: { kernelFraction: 0.3 } }, {}] });
  const sampler = new ViewSampler(config, { seed: 21 });
  const data = Float32Array.from({ length: 3 * 17 * 15 * 3 }, (_, i) => (Math.sin(i * 0.37) + 1) / 2);
  const [p1, p2] = sampler.drawParams(3, 17, 15);
  const expected = [applyViewJs(data, [3, 17, 15, 3], p1, config, config.views[0]), applyViewJs(data, [3, 17, 15, 3], p2, config, config.views[1])];
  await useBackend('wasm');
  try {
    const x = tf.tensor4d(data, [3, 17, 15, 3]);
    [p1, p2].forEach((p, v) => {
      const t = applyView(x, p, config, config.views[v]!);
      assertClose(t.dataSync(), expected[v]!, 5e-5, 5e-5, `view ${v} on wasm`);
      t.dispose();
    });
    x.dispose();
  } finally {
    await useBackend('cpu');
  }
});
