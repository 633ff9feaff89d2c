import { invalidOption } from '../errors.js';

/** Colour jitter (paper App. B, Table 6; official `color_transform`). */
export interface ColorJitterConfig {
  /** Probability that an image is jittered at all. Paper: 0.8. */
  readonly prob: number;
  /** Additive brightness δ ~ U(−b, b). Paper: 0.4. */
  readonly brightness: number;
  /** Contrast factor ~ U(1 − c, 1 + c) around each channel's mean. Paper: 0.4. */
  readonly contrast: number;
  /** Saturation factor ~ U(1 − s, 1 + s). Paper: 0.2. */
  readonly saturation: number;
  /** Hue shift ~ U(−h, h), in turns. Paper: 0.1. */
  readonly hue: number;
  /** Apply the four in a random order per image (official `shuffle=True`). */
  readonly randomOrder: boolean;
}

/** One augmentation distribution: T or T′ of the paper (App. B, Table 6). */
export interface ViewConfig {
  /** Horizontal-flip probability. Paper: 0.5 in both. */
  readonly flip: number;
  readonly colorJitter: ColorJitterConfig;
  /** Probability of grayscale conversion (luma 0.2989, 0.5870, 0.1140). Paper: 0.2 in both. */
  readonly grayscale: number;
  readonly blur: {
    /** Paper: 1.0 in T, 0.1 in T′. */
    readonly prob: number;
    /** σ ~ U(min, max) in pixels. Paper: 0.1, 2.0. */
    readonly sigmaMin: number;
    readonly sigmaMax: number;
    /** Kernel side ≈ this fraction of the image side (official `blur_divider` 10: 23 px at 224). */
    readonly kernelFraction: number;
  };
  readonly solarize: {
    /** Paper: 0 in T, 0.2 in T′. */
    readonly prob: number;
    /** x → 1 − x where x ≥ threshold. Official: 0.5. */
    readonly threshold: number;
  };
}

export type Interpolation = 'bilinear' | 'bicubic';

/** The whole two-view pipeline. */
export interface ViewsConfig {
  /** Side of the square output views. */
  readonly size: number;
  /** Input channels: 3 (RGB) or 1 (grey; colour jitter and grayscale need 3 and must be off). */
  readonly channels: 1 | 3;
  readonly crop: {
    /** Area fraction range. Paper/official: [0.08, 1]. */
    readonly scale: readonly [number, number];
    /** Aspect-ratio range (width/height), sampled log-uniformly. Paper/official: [3/4, 4/3]. */
    readonly ratio: readonly [number, number];
    /** Attempts before the centre-crop fallback (torchvision's RandomResizedCrop: 10). */
    readonly attempts: number;
  };
  /** Resampling of the crop: bilinear (default) or bicubic (official code; Keys a = −0.5 as TF). */
  readonly interpolation: Interpolation;
  /** T and T′. */
  readonly views: readonly [ViewConfig, ViewConfig];
  /** Per-channel normalization applied last, on [0, 1] values. */
  readonly mean: readonly number[];
  readonly std: readonly number[];
}

const IMAGENET_MEAN = [0.485, 0.456, 0.406];
const IMAGENET_STD = [0.229, 0.224, 0.225];
/** CIFAR-10 training-set statistics (as solo-learn and lightly use). */
const CIFAR_MEAN = [0.4914, 0.4822, 0.4465];
const CIFAR_STD = [0.247, 0.2435, 0.2616];

const JITTER: ColorJitterConfig = { prob: 0.8, brightness: 0.4, contrast: 0.4, saturation: 0.2, hue: 0.1, randomOrder: true };
const NO_JITTER: ColorJitterConfig = { ...JITTER, prob: 0 };

/** T: blur always, never solarize (paper Table 6). */
const T: ViewConfig = {
  flip: 0.5,
  colorJitter: JITTER,
  grayscale: 0.2,
  blur: { prob: 1.0, sigmaMin: 0.1, sigmaMax: 2.0, kernelFraction: 0.1 },
  solarize: { prob: 0, threshold: 0.5 },
};
/** T′: blur 10 % of the time, solarize 20 % (paper Table 6). */
const T_PRIME: ViewConfig = { ...T, blur: { ...T.blur, prob: 0.1 }, solarize: { prob: 0.2, threshold: 0.5 } };

const both = (f: (v: ViewConfig) => ViewConfig): readonly [ViewConfig, ViewConfig] => [f(T), f(T_PRIME)];
const noBlur = (v: ViewConfig): ViewConfig => ({ ...v, blur: { ...v.blur, prob: 0 } });
const noColor = (v: ViewConfig): ViewConfig => ({ ...v, colorJitter: NO_JITTER, grayscale: 0 });

/** Named pipelines. */
export const VIEW_PRESETS = {
  /** The paper's pipeline at 224 px with ImageNet normalization (App. B). */
  imagenet: {
    size: 224,
    channels: 3,
    crop: { scale: [0.08, 1], ratio: [3 / 4, 4 / 3], attempts: 10 },
    interpolation: 'bilinear',
    views: [T, T_PRIME],
    mean: IMAGENET_MEAN,
    std: IMAGENET_STD,
  },
  /**
   * 32-px images (CIFAR): the paper's pipeline without Gaussian blur — a 3-px kernel only smears such small
   * images (deviation from the paper, as solo-learn and lightly do at this size) — and CIFAR-10 normalization.
   */
  cifar: {
    size: 32,
    channels: 3,
    crop: { scale: [0.08, 1], ratio: [3 / 4, 4 / 3], attempts: 10 },
    interpolation: 'bilinear',
    views: both(noBlur),
    mean: CIFAR_MEAN,
    std: CIFAR_STD,
  },
  /**
   * 28-px grey images (MNIST, Fashion-MNIST): crop, flip and solarization; no colour operations (one channel)
   * and no blur (too small). Normalized with Fashion-MNIST's mean and std (0.2860, 0.3530).
   */
  grey: {
    size: 28,
    channels: 1,
    crop: { scale: [0.08, 1], ratio: [3 / 4, 4 / 3], attempts: 10 },
    interpolation: 'bilinear',
    views: both((v) => noBlur(noColor(v))),
    mean: [0.286],
    std: [0.353],
  },
} as const satisfies Record<string, ViewsConfig>;

export type ViewPresetName = keyof typeof VIEW_PRESETS;

/** The augmentation ablations of the paper's Table 17 (App. F), applied on top of a preset. */
export type ViewAblation =
  /** Random crop only. */
  | 'crop-only'
  /** Random crop and horizontal flip. */
  | 'crop-flip'
  /** No colour jitter and no grayscale. */
  | 'no-color'
  /** No Gaussian blur. */
  | 'no-blur'
  /**
   * T and T′ made equal: blur and solarize probabilities both set to the mean of T's and T′'s (blur 0.55,
   * solarize 0.1), our reading of "symmetric" augmentations.
   */
  | 'symmetric';

export const VIEW_ABLATIONS: readonly ViewAblation[] = ['crop-only', 'crop-flip', 'no-color', 'no-blur', 'symmetric'];

export function ablate(config: ViewsConfig, ablation: ViewAblation): ViewsConfig {
  const [a, b] = config.views;
  const map = (f: (v: ViewConfig) => ViewConfig): ViewsConfig => ({ ...config, views: [f(a), f(b)] });
  const bare = (v: ViewConfig): ViewConfig => ({ ...noBlur(noColor(v)), solarize: { ...v.solarize, prob: 0 } });
  switch (ablation) {
    case 'crop-only':
      return map((v) => ({ ...bare(v), flip: 0 }));
    case 'crop-flip':
      return map(bare);
    case 'no-color':
      return map(noColor);
    case 'no-blur':
      return map(noBlur);
    case 'symmetric': {
      const blur = (a.blur.prob + b.blur.prob) / 2;
      const sol = (a.solarize.prob + b.solarize.prob) / 2;
      return map((v) => ({ ...v, blur: { ...v.blur, prob: blur }, solarize: { ...v.solarize, prob: sol } }));
    }
  }
}

/** A deep-partial override of a preset. */
export type ViewsOverrides = {
  readonly size?: number;
  readonly channels?: 1 | 3;
  readonly crop?: Partial<ViewsConfig['crop']>;
  readonly interpolation?: Interpolation;
  readonly views?: readonly [ViewOverrides?, ViewOverrides?];
  readonly mean?: readonly number[];
  readonly std?: readonly number[];
};
export type ViewOverrides = {
  readonly flip?: number;
  readonly colorJitter?: Partial<ColorJitterConfig>;
  readonly grayscale?: number;
  readonly blur?: Partial<ViewConfig['blur']>;
  readonly solarize?: Partial<ViewConfig['solarize']>;
};

/**
 * How a model folder's `byol.json` describes its encoder's input — what `byol embed`, `eval` and the page do before the
 * encoder: pixels to [0, 1], then (x − mean) / std per channel.
 */
export function inputDescription(v: { readonly size: number | null | undefined; readonly channels: number | null | undefined; readonly mean: readonly number[]; readonly std: readonly number[] }) {
  return { size: v.size, channels: v.channels, range: '[0, 1] then (x − mean) / std', mean: v.mean, std: v.std };
}

/** A preset, optionally ablated and overridden, validated. */
export function resolveViewsConfig(
  preset: ViewPresetName | ViewsConfig = 'imagenet',
  overrides: ViewsOverrides = {},
  ablation?: ViewAblation,
): ViewsConfig {
  let base: ViewsConfig;
  if (typeof preset === 'string') {
    const p = (VIEW_PRESETS as Record<string, ViewsConfig>)[preset];
    if (!p) throw invalidOption('preset', `one of ${Object.keys(VIEW_PRESETS).map((k) => `"${k}"`).join(', ')}`, preset);
    base = p;
  } else base = preset;
  if (ablation !== undefined) {
    if (!VIEW_ABLATIONS.includes(ablation)) throw invalidOption('ablation', `one of ${VIEW_ABLATIONS.map((k) => `"${k}"`).join(', ')}`, ablation);
    base = ablate(base, ablation);
  }
  const mergeView = (v: ViewConfig, o: ViewOverrides | undefined): ViewConfig =>
    o === undefined
      ? v
      : {
          flip: o.flip ?? v.flip,
          colorJitter: { ...v.colorJitter, ...o.colorJitter },
          grayscale: o.grayscale ?? v.grayscale,
          blur: { ...v.blur, ...o.blur },
          solarize: { ...v.solarize, ...o.solarize },
        };
  const config: ViewsConfig = {
    size: overrides.size ?? base.size,
    channels: overrides.channels ?? base.channels,
    crop: { ...base.crop, ...overrides.crop },
    interpolation: overrides.interpolation ?? base.interpolation,
    views: [mergeView(base.views[0], overrides.views?.[0]), mergeView(base.views[1], overrides.views?.[1])],
    mean: overrides.mean ?? base.mean,
    std: overrides.std ?? base.std,
  };
  validateViewsConfig(config);
  return config;
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

function prob(name: string, v: unknown): void {
  if (!(isNum(v) && v >= 0 && v <= 1)) throw invalidOption(name, 'a probability in [0, 1]', v);
}
function range(name: string, v: unknown, lo: number, hi: number): void {
  if (!(isNum(v) && v >= lo && v <= hi)) throw invalidOption(name, `a number in [${lo}, ${hi}]`, v);
}

/** Throws INVALID_OPTION naming the first bad field. */
export function validateViewsConfig(c: ViewsConfig): void {
  if (!(Number.isInteger(c.size) && c.size >= 1)) throw invalidOption('size', 'a positive integer', c.size);
  if (c.channels !== 1 && c.channels !== 3) throw invalidOption('channels', '1 or 3', c.channels);
  const [s0, s1] = c.crop.scale;
  if (!(isNum(s0) && isNum(s1) && s0 > 0 && s0 <= s1 && s1 <= 1)) throw invalidOption('crop.scale', '[min, max] with 0 < min ≤ max ≤ 1', c.crop.scale);
  const [r0, r1] = c.crop.ratio;
  if (!(isNum(r0) && isNum(r1) && r0 > 0 && r0 <= r1)) throw invalidOption('crop.ratio', '[min, max] with 0 < min ≤ max', c.crop.ratio);
  if (!(Number.isInteger(c.crop.attempts) && c.crop.attempts >= 1)) throw invalidOption('crop.attempts', 'a positive integer', c.crop.attempts);
  if (c.interpolation !== 'bilinear' && c.interpolation !== 'bicubic') throw invalidOption('interpolation', '"bilinear" or "bicubic"', c.interpolation);
  for (const [name, arr] of [['mean', c.mean], ['std', c.std]] as const) {
    if (!Array.isArray(arr) || arr.length !== c.channels || !arr.every(isNum)) throw invalidOption(name, `${c.channels} finite numbers (one per channel)`, arr);
  }
  if (!c.std.every((s) => s > 0)) throw invalidOption('std', 'positive numbers', c.std);
  c.views.forEach((v, i) => {
    const p = `views[${i}]`;
    prob(`${p}.flip`, v.flip);
    prob(`${p}.colorJitter.prob`, v.colorJitter.prob);
    range(`${p}.colorJitter.brightness`, v.colorJitter.brightness, 0, 1);
    range(`${p}.colorJitter.contrast`, v.colorJitter.contrast, 0, 1);
    range(`${p}.colorJitter.saturation`, v.colorJitter.saturation, 0, 1);
    range(`${p}.colorJitter.hue`, v.colorJitter.hue, 0, 0.5);
    prob(`${p}.grayscale`, v.grayscale);
    prob(`${p}.blur.prob`, v.blur.prob);
    if (!(isNum(v.blur.sigmaMin) && v.blur.sigmaMin > 0 && isNum(v.blur.sigmaMax) && v.blur.sigmaMax >= v.blur.sigmaMin)) {
      throw invalidOption(`${p}.blur.sigmaMin`, 'a positive number ≤ blur.sigmaMax', v.blur.sigmaMin);
    }
    range(`${p}.blur.kernelFraction`, v.blur.kernelFraction, 0, 1);
    prob(`${p}.solarize.prob`, v.solarize.prob);
    range(`${p}.solarize.threshold`, v.solarize.threshold, 0, 1);
    if (c.channels === 1 && (v.colorJitter.prob > 0 || v.grayscale > 0)) {
      throw invalidOption(`${p}.colorJitter.prob`, '0 with one channel (colour jitter and grayscale need RGB)', v.colorJitter.prob);
    }
  });
}
