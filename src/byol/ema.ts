import * as tf from '@tensorflow/tfjs-core';
import { ByolError } from '../errors.js';
import { FUSED_EMA_ALL_KERNEL, FUSED_EMA_KERNEL, emaReference } from '../kernels.js';

export { FUSED_EMA_ALL_KERNEL, FUSED_EMA_KERNEL };

/**
 * The target update after each optimizer step (paper eq. 1): ξ ← τ·ξ + (1 − τ)·θ, pairwise over
 * `target` and `online`. τ = 1 leaves the target untouched (no work is done); τ = 0 copies the online
 * weights exactly.
 */
export function emaUpdate(target: readonly tf.Variable[], online: readonly tf.Variable[], tau: number): void {
  assertPaired(target, online);
  if (tau === 1) return;
  // A backend may bring the update as one kernel for all weights, or one per weight (the native backend has both:
  // one pass instead of three, and one call instead of one per weight).
  const all = tau !== 0 && target.length > 0 && tf.getKernel(FUSED_EMA_ALL_KERNEL, tf.getBackend()) !== undefined && target.every((t) => t.dtype === 'float32');
  if (all) {
    tf.tidy(() => {
      const inputs: Record<string, tf.Tensor> = {};
      target.forEach((t, i) => {
        inputs[`target${i}`] = t;
        inputs[`online${i}`] = online[i]!;
      });
      const out = tf.engine().runKernel(FUSED_EMA_ALL_KERNEL, inputs, { tau }) as tf.Tensor | tf.Tensor[];
      (Array.isArray(out) ? out : [out]).forEach((v, i) => target[i]!.assign(v));
    });
    return;
  }
  const fused = tau !== 0 && tf.getKernel(FUSED_EMA_KERNEL, tf.getBackend()) !== undefined;
  tf.tidy(() => {
    for (let i = 0; i < target.length; i++) {
      const t = target[i]!;
      const o = online[i]!;
      if (tau === 0) t.assign(o);
      else if (fused && t.dtype === 'float32') {
        t.assign(tf.engine().runKernel(FUSED_EMA_KERNEL, { target: t, online: o }, { tau }) as tf.Tensor);
      } else t.assign(emaReference(t, o, tau));
    }
  });
}

/** Copies `source` into `dest` pairwise (the target's start as a copy of the online network). */
export function copyVariables(dest: readonly tf.Variable[], source: readonly tf.Variable[]): void {
  assertPaired(dest, source);
  tf.tidy(() => {
    for (let i = 0; i < dest.length; i++) dest[i]!.assign(source[i]!);
  });
}

function assertPaired(a: readonly tf.Variable[], b: readonly tf.Variable[]): void {
  if (a.length !== b.length) {
    throw new ByolError('INVALID_STATE', `online and target networks differ: ${b.length} weights against ${a.length}`);
  }
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (!tf.util.arraysEqual(x.shape, y.shape)) {
      throw new ByolError('INVALID_STATE', `online and target weight ${i} differ in shape: [${y.shape}] against [${x.shape}]`);
    }
  }
}

/** Identity forward, zero gradient: the stop-gradient of SimSiam's target branch. */
export const stopGradient = tf.customGrad(((x: tf.Tensor) => ({
  value: tf.clone(x),
  gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
})) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as <T extends tf.Tensor>(x: T) => T;
