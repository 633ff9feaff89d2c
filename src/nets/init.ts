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
 * Haiku's default for Linear and Conv2D weights, used by the official code: a truncated normal with
 * variance 1/fan_in.
 */
export function fanInTruncatedNormal(seeds: SeedStream) {
  const seed = seeds.take();
  return tfl.initializers.varianceScaling({
    scale: 1,
    mode: 'fanIn',
    distribution: 'truncatedNormal',
    ...(seed === undefined ? {} : { seed }),
  });
}
