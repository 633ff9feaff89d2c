/**
 * The fused kernels a backend may bring, as a contract of the core: their names, their inputs, attributes and outputs,
 * and a reference implementation of each in plain tfjs ops. The learner's modules (LARS, the EMA, batch norm) run a
 * kernel where the backend registers it and its reference elsewhere; a backend (byol's native one) implements them
 * against this module and is tested against the references (test/kernels.test.ts). Nothing here knows any backend.
 */
import * as tf from '@tensorflow/tfjs-core';

/**
 * One LARS step (You et al. 2017, as the official BYOL code): inputs `p`, `g`, `mu`; attrs `lr`, `weightDecay`,
 * `momentum`, `eta`, `adapt`; outputs [new p, new mu]. See {@link larsUpdateReference}.
 */
export const FUSED_LARS_KERNEL = 'ByolLarsUpdate';
/** The EMA of one weight: inputs `target`, `online`; attr `tau`; output the new target. See {@link emaReference}. */
export const FUSED_EMA_KERNEL = 'ByolEmaUpdate';
/**
 * The EMA of every weight in one call: inputs `target0`, `online0`, `target1`, `online1`, …; attr `tau`; outputs the new
 * targets in order.
 */
export const FUSED_EMA_ALL_KERNEL = 'ByolEmaUpdateAll';
/**
 * Batch norm's training pass: inputs `x` (channels last), `scale`, `offset`; attr `varianceEpsilon`; outputs [y, batch
 * mean, biased batch variance]. See {@link batchNormTrainReference}.
 */
export const FUSED_BN_TRAIN_KERNEL = 'ByolBatchNormTrain';
/**
 * Batch norm's training pass followed by ReLU, in the passes of batch norm alone: as {@link FUSED_BN_TRAIN_KERNEL}, but
 * its first output is max(0, y). See {@link batchNormReluTrainReference}.
 */
export const FUSED_BN_RELU_TRAIN_KERNEL = 'ByolBatchNormReluTrain';
/**
 * The gradient of either training pass: inputs `x`, `dy`, `mean`, `variance`, `scale`, and for the ReLU form `y` (its
 * rectified output); attr `varianceEpsilon`; outputs [dx, dscale, doffset], the derivative through the batch
 * statistics — with `y`, of dy zeroed where y ≤ 0 (ReLU's gradient, as tfjs: none at 0). See
 * {@link batchNormGradReference}.
 */
export const FUSED_BN_GRAD_KERNEL = 'ByolBatchNormGrad';

/**
 * A residual sum followed by ReLU in one pass: inputs `a`, `b` of one shape; output max(0, a + b) (NaN stays NaN). See
 * {@link addReluReference}.
 */
export const FUSED_ADD_RELU_KERNEL = 'ByolAddRelu';
/**
 * ReLU's gradient in one pass: inputs `a` (dy) and `b` (the ReLU's output y) of one shape; output dy·step(y) (NaN where
 * y is NaN, as tfjs's Step). See {@link reluGradReference}.
 */
export const RELU_GRAD_KERNEL = 'ByolReluGrad';

/** Every fused kernel name of the contract. */
export const FUSED_KERNELS = [
  FUSED_LARS_KERNEL,
  FUSED_EMA_KERNEL,
  FUSED_EMA_ALL_KERNEL,
  FUSED_BN_TRAIN_KERNEL,
  FUSED_BN_RELU_TRAIN_KERNEL,
  FUSED_BN_GRAD_KERNEL,
  FUSED_ADD_RELU_KERNEL,
  RELU_GRAD_KERNEL,
] as const;
export type FusedKernelName = (typeof FUSED_KERNELS)[number];

export interface LarsAttrs {
  readonly lr: number;
  readonly weightDecay: number;
  readonly momentum: number;
  readonly eta: number;
  /** False for biases and batch-norm parameters: no decay, no trust ratio (official code's exclusion). */
  readonly adapt: boolean;
}

/**
 * LARS as in the official BYOL code: u = g + wd·p; u ← u·η‖p‖/‖u‖ (trust 1 when either norm is 0); μ ← m·μ + u;
 * p ← p − lr·μ. With `adapt` false: u = g. Returns [new p, new mu].
 */
export function larsUpdateReference(p: tf.Tensor, g: tf.Tensor, mu: tf.Tensor, a: LarsAttrs): [tf.Tensor, tf.Tensor] {
  return tf.tidy(() => {
    let u = g;
    if (a.adapt) {
      if (a.weightDecay !== 0) u = tf.add(u, tf.mul(p, a.weightDecay));
      const pNorm = tf.norm(p);
      const uNorm = tf.norm(u);
      const usable = tf.logicalAnd(tf.greater(pNorm, 0), tf.greater(uNorm, 0));
      const trust = tf.where(usable, tf.div(tf.mul(pNorm, a.eta), uNorm), tf.onesLike(pNorm));
      u = tf.mul(u, trust);
    }
    const newMu = tf.add(tf.mul(mu, a.momentum), u);
    return [tf.sub(p, tf.mul(newMu, a.lr)), newMu];
  });
}

/** ξ ← τ·ξ + (1 − τ)·θ (paper eq. 1). */
export function emaReference(target: tf.Tensor, online: tf.Tensor, tau: number): tf.Tensor {
  return tf.tidy(() => tf.add(tf.mul(target, tau), tf.mul(online, 1 - tau)));
}

/** y = (x − mean)/√(var + ε)·scale + offset over the batch (all axes but the last); returns [y, mean, biased variance]. */
export function batchNormTrainReference(x: tf.Tensor, scale: tf.Tensor, offset: tf.Tensor, varianceEpsilon: number): [tf.Tensor, tf.Tensor, tf.Tensor] {
  return tf.tidy(() => {
    const axes = [...Array(x.rank - 1).keys()];
    const { mean, variance } = tf.moments(x, axes);
    return [tf.batchNorm(x, mean, variance, offset, scale, varianceEpsilon), mean, variance];
  });
}

/** {@link batchNormTrainReference} followed by ReLU: returns [max(0, y), mean, biased variance]. */
export function batchNormReluTrainReference(x: tf.Tensor, scale: tf.Tensor, offset: tf.Tensor, varianceEpsilon: number): [tf.Tensor, tf.Tensor, tf.Tensor] {
  return tf.tidy(() => {
    const [y, mean, variance] = batchNormTrainReference(x, scale, offset, varianceEpsilon);
    return [tf.relu(y), mean, variance];
  });
}

/**
 * The gradient of {@link batchNormTrainReference}'s y through the batch statistics, in closed form: with
 * x̂ = (x − mean)/√(var + ε) and m values per channel, dx = scale/√(var + ε)·(dy − mean(dy) − x̂·mean(dy·x̂)),
 * dscale = Σ dy·x̂, doffset = Σ dy. With `y` (the output of {@link batchNormReluTrainReference}), of dy·step(y)
 * instead. Returns [dx, dscale, doffset].
 */
export function batchNormGradReference(x: tf.Tensor, dyIn: tf.Tensor, mean: tf.Tensor, variance: tf.Tensor, scale: tf.Tensor, varianceEpsilon: number, y?: tf.Tensor): [tf.Tensor, tf.Tensor, tf.Tensor] {
  return tf.tidy(() => {
    const dy = y ? tf.mul(dyIn, tf.step(y)) : dyIn;
    const axes = [...Array(x.rank - 1).keys()];
    const inv = tf.rsqrt(tf.add(variance, varianceEpsilon));
    const xHat = tf.mul(tf.sub(x, mean), inv);
    const dOffset = tf.sum(dy, axes);
    const dScale = tf.sum(tf.mul(dy, xHat), axes);
    const m = x.size / (x.shape[x.rank - 1] ?? 1);
    const dx = tf.mul(tf.mul(scale, inv), tf.sub(tf.sub(dy, tf.div(dOffset, m)), tf.mul(xHat, tf.div(dScale, m))));
    return [dx, dScale, dOffset];
  });
}

/** max(0, a + b): the residual block's sum and ReLU. */
export function addReluReference(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.relu(tf.add(a, b)));
}

/** dy·step(y): ReLU's gradient, its mask taken from ReLU's output y (y > 0 exactly where the input was). */
export function reluGradReference(dy: tf.Tensor, y: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(dy, tf.step(y)));
}
