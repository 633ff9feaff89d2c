import * as tfl from '@tensorflow/tfjs-layers';

/** Batch-norm settings of the official code (`bn_config`: decay 0.9, ε = 1e-5; PyTorch's defaults too). */
export interface BatchNormConfig {
  /** Moving-average decay of the running statistics. */
  readonly momentum: number;
  readonly epsilon: number;
}

export const DEFAULT_BATCH_NORM: BatchNormConfig = { momentum: 0.9, epsilon: 1e-5 };

/**
 * Hands out per-layer initializer seeds from one base seed, so that a seeded network is reproducible;
 * with no base seed every layer draws freshly.
 */
export class SeedStream {
  private next: number | undefined;
  constructor(seed: number | undefined) {
    this.next = seed;
  }
  take(): number | undefined {
    if (this.next === undefined) return undefined;
    this.next = (Math.imul(this.next, 1664525) + 1013904223) >>> 0;
    return this.next;
  }
}

/**
 * Std of a standard normal truncated to [−2, 2]: Haiku's VarianceScaling divides by it so that the truncated draws keep
 * the asked variance (haiku/_src/initializers.py).
 */
export const TRUNCATED_NORMAL_STD = 0.87962566103423978;

/**
 * Haiku's default for Linear and Conv2D weights, used by the official code: a normal truncated at two standard
 * deviations, scaled so that its variance is 1/fan_in. tfjs-layers 4.x's `varianceScaling` cannot be asked for that by
 * name (its `truncatedNormal` distribution draws a uniform), but its `normal` distribution draws `tf.truncatedNormal`
 * (cut at 2σ) with σ² = scale/fan_in: asking scale 1/0.8796² gives Haiku's draw exactly, under the stock class (so
 * saved models load anywhere). Tested: variance 1/fan_in, bounded by 2σ, the truncated normal's mass within 1σ.
 */
export function fanInTruncatedNormal(seeds: SeedStream) {
  const seed = seeds.take();
  return tfl.initializers.varianceScaling({
    scale: 1 / TRUNCATED_NORMAL_STD ** 2,
    mode: 'fanIn',
    distribution: 'normal',
    ...(seed === undefined ? {} : { seed }),
  });
}
