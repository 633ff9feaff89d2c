import type { Rng } from './rng.js';
import type { ViewConfig, ViewsConfig } from './options.js';

/** A crop window in pixels (integers): rows top..top+height−1, columns left..left+width−1. */
export interface CropBox {
  readonly top: number;
  readonly left: number;
  readonly height: number;
  readonly width: number;
}

/** Colour-jitter operations, in the index order the `order` permutation refers to. */
export const JITTER_OPS = ['brightness', 'contrast', 'saturation', 'hue'] as const;

/** Every random choice made for one image of one view. */
export interface ImageParams {
  readonly crop: CropBox;
  readonly flip: boolean;
  /** Whether colour jitter applies to this image. */
  readonly jitter: boolean;
  /** Order of the jitter operations (indices into {@link JITTER_OPS}). */
  readonly order: readonly number[];
  /** Additive brightness δ. */
  readonly brightness: number;
  /** Contrast factor. */
  readonly contrast: number;
  /** Saturation factor. */
  readonly saturation: number;
  /** Hue shift in turns. */
  readonly hue: number;
  readonly grayscale: boolean;
  readonly blur: boolean;
  /** Blur σ in pixels of the output view. */
  readonly sigma: number;
  readonly solarize: boolean;
}

/**
 * Random resized crop window (torchvision's RandomResizedCrop, which the paper's "random patch" follows): up to
 * `attempts` draws of area fraction ~ U(scale) and log aspect ratio ~ U(log ratio); the first that fits inside
 * the image is placed uniformly. Failing that, a centre crop of the whole image clamped to the ratio range.
 * (The official code makes one draw and clamps it to the image instead.)
 */
export function sampleCrop(height: number, width: number, crop: ViewsConfig['crop'], rng: Rng): CropBox {
  const area = height * width;
  const logLo = Math.log(crop.ratio[0]);
  const logHi = Math.log(crop.ratio[1]);
  for (let i = 0; i < crop.attempts; i++) {
    const target = area * rng.uniform(crop.scale[0], crop.scale[1]);
    const aspect = Math.exp(rng.uniform(logLo, logHi));
    const w = Math.round(Math.sqrt(target * aspect));
    const h = Math.round(Math.sqrt(target / aspect));
    if (w > 0 && h > 0 && w <= width && h <= height) {
      return { top: rng.int(0, height - h), left: rng.int(0, width - w), height: h, width: w };
    }
  }
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < crop.ratio[0]) h = Math.round(w / crop.ratio[0]);
  else if (inRatio > crop.ratio[1]) w = Math.round(h * crop.ratio[1]);
  return { top: Math.floor((height - h) / 2), left: Math.floor((width - w) / 2), height: h, width: w };
}

/**
 * Draws every random choice for `n` images of one view, in a fixed order per image, so that a seed fixes the
 * views. All draws are made whether or not an operation applies, so one image's choices never shift another's.
 */
export function sampleViewParams(n: number, height: number, width: number, config: ViewsConfig, view: ViewConfig, rng: Rng): ImageParams[] {
  const out: ImageParams[] = [];
  const j = view.colorJitter;
  for (let i = 0; i < n; i++) {
    const crop = sampleCrop(height, width, config.crop, rng);
    const flip = rng.bernoulli(view.flip);
    const jitter = rng.bernoulli(j.prob);
    const perm = rng.permutation(4);
    const order = j.randomOrder ? perm : [0, 1, 2, 3];
    const brightness = rng.uniform(-j.brightness, j.brightness);
    const contrast = rng.uniform(1 - j.contrast, 1 + j.contrast);
    const saturation = rng.uniform(1 - j.saturation, 1 + j.saturation);
    const hue = rng.uniform(-j.hue, j.hue);
    const grayscale = rng.bernoulli(view.grayscale);
    const blur = rng.bernoulli(view.blur.prob);
    const sigma = rng.uniform(view.blur.sigmaMin, view.blur.sigmaMax);
    const solarize = rng.bernoulli(view.solarize.prob);
    out.push({ crop, flip, jitter, order, brightness, contrast, saturation, hue, grayscale, blur, sigma, solarize });
  }
  return out;
}
