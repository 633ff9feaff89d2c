import * as tf from '@tensorflow/tfjs-core';
import { ByolError } from '../errors.js';
import {
  adjustBrightness,
  adjustContrast,
  adjustSaturationHue,
  blurRadius,
  gaussianBlur,
  grayscale,
  normalize,
  resizedCrops,
  solarize,
} from './ops.js';
import { resolveViewsConfig, type ViewAblation, type ViewConfig, type ViewPresetName, type ViewsConfig, type ViewsOverrides } from './options.js';
import { applyViewJs } from './js.js';
import { Rng } from './rng.js';
import { sampleViewParams, type ImageParams } from './sample.js';

/**
 * Turns a batch into float [0, 1]: int32 images are read as 0–255 (tfjs has no uint8 tensors; `tf.browser.fromPixels`
 * and decoders give int32), float32 images are taken as already in [0, 1].
 */
export function toUnitRange(images: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => (images.dtype === 'float32' ? tf.clone(images) : tf.div(tf.cast(images, 'float32'), 255)) as tf.Tensor4D);
}

/**
 * Applies one view's drawn choices to a batch in [0, 1], in the official order: crop and resize, flip, colour
 * jitter (the four operations in each image's own order, clipping after each), grayscale, blur, solarize, clip,
 * normalize. Returns [N, size, size, C] float32.
 */
export function applyView(images01: tf.Tensor4D, params: readonly ImageParams[], config: ViewsConfig, view: ViewConfig): tf.Tensor4D {
  return tf.tidy(() => {
    let x = resizedCrops(
      images01,
      params.map((p) => p.crop),
      params.map((p) => p.flip),
      config.size,
      config.interpolation,
    );
    if (config.interpolation === 'bicubic') x = tf.clipByValue(x, 0, 1) as tf.Tensor4D; // cubic overshoot, as the official code clips
    if (config.channels === 3 && params.some((p) => p.jitter)) {
      // Slot s applies each image's s-th operation; every other operation is the identity for that image there.
      for (let s = 0; s < 4; s++) {
        const op = params.map((p) => (p.jitter ? p.order[s]! : -1));
        if (op.includes(0)) x = adjustBrightness(x, params.map((p, i) => (op[i] === 0 ? p.brightness : 0)));
        if (op.includes(1)) x = adjustContrast(x, params.map((p, i) => (op[i] === 1 ? p.contrast : 1)));
        if (op.includes(2) || op.includes(3)) {
          x = adjustSaturationHue(
            x,
            params.map((p, i) => (op[i] === 2 ? p.saturation : 1)),
            params.map((p, i) => (op[i] === 3 ? p.hue : 0)),
          );
        }
      }
    }
    if (config.channels === 3 && params.some((p) => p.grayscale)) x = grayscale(x, params.map((p) => p.grayscale));
    if (params.some((p) => p.blur)) {
      x = gaussianBlur(x, params.map((p) => p.blur), params.map((p) => p.sigma), blurRadius(config.size, view.blur.kernelFraction));
    }
    if (params.some((p) => p.solarize)) x = solarize(x, params.map((p) => p.solarize), view.solarize.threshold);
    return normalize(tf.clipByValue(x, 0, 1) as tf.Tensor4D, config.mean, config.std);
  });
}

export interface ViewSamplerOptions {
  /** Seed of the random choices. Default: drawn from Math.random. */
  readonly seed?: number;
  /** Overrides of the preset's fields. */
  readonly overrides?: ViewsOverrides;
  /** One of the paper's augmentation ablations (Table 17). */
  readonly ablation?: ViewAblation;
  /**
   * `tensor`: batched tfjs ops, for GPU backends (webgl, webgpu). `js`: image-by-image loops on the CPU, for the
   * backends that keep tensors in CPU memory, where tfjs's broadcasting ops are slow. Default `auto`: `tensor` on
   * webgl and webgpu, `js` elsewhere. Both give the same views to float rounding.
   */
  readonly engine?: 'auto' | 'tensor' | 'js';
}

/** Backends whose tensors live on a GPU, where the batched tensor form pays off. */
const GPU_BACKENDS = new Set(['webgl', 'webgpu', 'tensorflow']);

/**
 * BYOL's two augmentation distributions T and T′ (paper App. B, Table 6; the official `augmentations.py`),
 * batched on any tfjs backend, every random choice drawn per image from a seeded generator.
 *
 * ```ts
 * const views = new ViewSampler('cifar', { seed: 1 });
 * const [v1, v2] = views.views(batch); // batch: [N, H, W, 3], int32 0–255 or float32 0–1
 * ```
 */
export class ViewSampler {
  readonly config: ViewsConfig;
  private readonly rng: Rng;
  private readonly engine: 'auto' | 'tensor' | 'js';

  constructor(preset: ViewPresetName | ViewsConfig = 'imagenet', options: ViewSamplerOptions = {}) {
    this.config = resolveViewsConfig(preset, options.overrides ?? {}, options.ablation);
    const seed = options.seed ?? Math.floor(Math.random() * 2 ** 32);
    if (!(Number.isInteger(seed) && seed >= 0)) throw new ByolError('INVALID_OPTION', `option \`seed\` must be a non-negative integer; got ${seed}`, 'seed');
    this.rng = new Rng(seed);
    const engine = options.engine ?? 'auto';
    if (engine !== 'auto' && engine !== 'tensor' && engine !== 'js') {
      throw new ByolError('INVALID_OPTION', `option \`engine\` must be "auto", "tensor" or "js"; got ${JSON.stringify(engine)}`, 'engine');
    }
    this.engine = engine;
  }

  /** The engine `views` uses on the current backend. */
  get activeEngine(): 'tensor' | 'js' {
    if (this.engine !== 'auto') return this.engine;
    return GPU_BACKENDS.has(tf.getBackend()) ? 'tensor' : 'js';
  }

  /** Generator state, for an exact resume. */
  get rngState(): number {
    return this.rng.state;
  }

  setRngState(state: number): void {
    this.rng.setState(state);
  }

  /** Draws the random choices of both views for a batch of n images of height × width. */
  drawParams(n: number, height: number, width: number): [ImageParams[], ImageParams[]] {
    const [t, tPrime] = this.config.views;
    return [sampleViewParams(n, height, width, this.config, t, this.rng), sampleViewParams(n, height, width, this.config, tPrime, this.rng)];
  }

  /** Two augmented views [T(x), T′(x)] of a batch [N, H, W, C] (int32 0–255 or float32 0–1). */
  views(images: tf.Tensor4D): [tf.Tensor4D, tf.Tensor4D] {
    this.check(images);
    const [n, h, w] = images.shape;
    const [p1, p2] = this.drawParams(n, h, w);
    if (this.activeEngine === 'js') {
      const unit = toUnitRange(images);
      const data = unit.dataSync() as Float32Array;
      unit.dispose();
      const s = this.config.size;
      const shape = [n, s, s, this.config.channels] as [number, number, number, number];
      const one = (p: ImageParams[], v: ViewConfig) => tf.tensor4d(applyViewJs(data, images.shape, p, this.config, v), shape);
      return [one(p1, this.config.views[0]), one(p2, this.config.views[1])];
    }
    return tf.tidy(() => {
      const x = toUnitRange(images);
      return [applyView(x, p1, this.config, this.config.views[0]), applyView(x, p2, this.config, this.config.views[1])];
    });
  }

  private check(images: tf.Tensor4D): void {
    if (!(images instanceof tf.Tensor) || images.rank !== 4) {
      throw new ByolError('INVALID_INPUT', `\`images\` must be a batch [N, H, W, C]; got ${images instanceof tf.Tensor ? `shape [${images.shape}]` : typeof images}`, 'images');
    }
    if (images.shape[3] !== this.config.channels) {
      throw new ByolError('INVALID_INPUT', `\`images\` must have ${this.config.channels} channel(s) for this pipeline; got ${images.shape[3]}`, 'images');
    }
    if (images.dtype !== 'float32' && images.dtype !== 'int32') {
      throw new ByolError('INVALID_INPUT', `\`images\` must be int32 (0–255) or float32 (0–1); got ${images.dtype}`, 'images');
    }
    if (images.shape[0] < 1 || images.shape[1] < 1 || images.shape[2] < 1) {
      throw new ByolError('INVALID_INPUT', `\`images\` is empty: shape [${images.shape}]`, 'images');
    }
  }
}
