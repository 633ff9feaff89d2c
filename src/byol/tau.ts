import { invalidOption } from '../errors.js';

/** How the target decay rate τ moves during training. */
export type TauSchedule = 'cosine' | 'constant';

/**
 * The target network's EMA decay rate at step `step` of `totalSteps`.
 *
 * Cosine (paper §3.2 and the official `_get_tau`): τ_k = 1 − (1 − τ_base)·(cos(πk/K) + 1)/2, so τ
 * starts at τ_base and reaches 1 at k = K. Steps past K stay at 1. `constant` returns τ_base at every
 * step: that is what the ablations with a fixed τ (τ = 1: fixed random target; τ = 0: the target is
 * the online network) need, since a cosine from τ_base = 0 would still rise towards 1.
 */
export function targetTau(step: number, totalSteps: number, base: number, schedule: TauSchedule = 'cosine'): number {
  if (!(base >= 0 && base <= 1)) throw invalidOption('tau', 'a number in [0, 1]', base);
  if (schedule === 'constant') return base;
  if (!(totalSteps > 0)) throw invalidOption('totalSteps', 'a positive integer', totalSteps);
  const k = Math.min(Math.max(step, 0), totalSteps);
  return 1 - (1 - base) * (Math.cos((Math.PI * k) / totalSteps) + 1) / 2;
}
