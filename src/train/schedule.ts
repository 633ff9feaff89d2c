import { invalidOption } from '../errors.js';

export interface LearningRateSchedule {
  /** Learning rate per 256 images (paper App. B: 0.2 for LARS). */
  readonly base: number;
  /** Images per step; the rate scales linearly with it (paper App. B: lr = base × batch / 256). */
  readonly batchSize: number;
  /** Linear warm-up steps from 0 (paper App. B: 10 epochs). */
  readonly warmupSteps: number;
  /** Steps in the whole run; the cosine decay reaches 0 there. */
  readonly totalSteps: number;
}

/**
 * Learning rate at `step` (0-based), as in the official `learning_rate_schedule`: linear warm-up from 0
 * to base × batch / 256 over `warmupSteps`, then a cosine decay to 0 at `totalSteps` (and 0 after it).
 */
export function learningRateAt(step: number, s: LearningRateSchedule): number {
  if (!(s.totalSteps > 0)) throw invalidOption('totalSteps', 'a positive integer', s.totalSteps);
  const peak = (s.base * s.batchSize) / 256;
  if (step < s.warmupSteps) return (peak * step) / s.warmupSteps;
  const decaySteps = s.totalSteps - s.warmupSteps;
  if (decaySteps <= 0) return 0;
  const t = Math.min(step - s.warmupSteps, decaySteps) / decaySteps;
  return peak * 0.5 * (1 + Math.cos(Math.PI * t));
}
