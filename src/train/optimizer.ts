import * as tf from '@tensorflow/tfjs-core';
import { FUSED_LARS_KERNEL, larsUpdateReference, type LarsAttrs } from '../kernels.js';
import { ByolError } from '../errors.js';

/**
 * Saved optimizer state: enough to continue a run bit-exactly. `slots` holds, per slot name (e.g. `mu`
 * for momentum), one array per parameter, in parameter order.
 */
export interface OptimizerState {
  readonly kind: string;
  /** Optimizer updates done so far (AdamW's bias correction depends on it). */
  readonly updates: number;
  readonly slots: Readonly<Record<string, readonly Float32Array[]>>;
}

/**
 * The default exclusion rule: biases and normalization scales/offsets are the 1-D parameters. They get
 * neither weight decay nor LARS adaptation (paper App. B; the official `exclude_bias_and_norm` filter, and
 * the `ndim == 1` rule of solo-learn and lightly, which also works for user models whose names we do not know).
 */
export function isBiasOrNorm(v: tf.Variable): boolean {
  return v.rank <= 1;
}

/** One optimizer over a fixed list of parameters, with per-parameter slots held as tf.Variables. */
export abstract class Optimizer {
  abstract readonly kind: string;
  protected readonly params: readonly tf.Variable[];
  /** Per parameter: true when weight decay and LARS adaptation are skipped. */
  protected readonly excluded: readonly boolean[];
  protected readonly slots: Record<string, tf.Variable[]> = {};
  protected updates = 0;

  constructor(params: readonly tf.Variable[], exclude: (v: tf.Variable) => boolean, slotNames: readonly string[]) {
    this.params = params;
    this.excluded = params.map(exclude);
    // Made inside tidy, so that the zero tensors the slots start from are freed.
    for (const name of slotNames) this.slots[name] = params.map((p) => tf.tidy(() => tf.variable(tf.zerosLike(p), false)));
  }

  /** Applies one update with `grads[i]` the gradient of parameter i, at learning rate `lr`. */
  apply(grads: readonly tf.Tensor[], lr: number): void {
    if (grads.length !== this.params.length) {
      throw new ByolError('INVALID_STATE', `optimizer got ${grads.length} gradients for ${this.params.length} parameters`);
    }
    this.updates++;
    tf.tidy(() => {
      for (let i = 0; i < this.params.length; i++) this.update(i, grads[i]!, lr);
    });
  }

  protected abstract update(i: number, grad: tf.Tensor, lr: number): void;

  protected slot(name: string, i: number): tf.Variable {
    return this.slots[name]![i]!;
  }

  async getState(): Promise<OptimizerState> {
    const slots: Record<string, Float32Array[]> = {};
    for (const [name, vars] of Object.entries(this.slots)) {
      slots[name] = await Promise.all(vars.map(async (v) => new Float32Array(await v.data<'float32'>())));
    }
    return { kind: this.kind, updates: this.updates, slots };
  }

  setState(state: OptimizerState): void {
    if (state.kind !== this.kind) {
      throw new ByolError('INVALID_STATE', `optimizer state is for \`${state.kind}\`, this learner uses \`${this.kind}\``, 'optimizer');
    }
    if (!Number.isInteger(state.updates) || state.updates < 0) {
      throw new ByolError('INVALID_STATE', `optimizer state \`updates\` must be a non-negative integer; got ${state.updates}`, 'updates');
    }
    const names = Object.keys(this.slots);
    for (const name of names) {
      const values = state.slots[name];
      if (!values || values.length !== this.params.length) {
        throw new ByolError('INVALID_STATE', `optimizer state slot \`${name}\` must hold ${this.params.length} arrays; got ${values ? values.length : 'none'}`, name);
      }
      values.forEach((arr, i) => {
        if (arr.length !== this.params[i]!.size) {
          throw new ByolError('INVALID_STATE', `optimizer state slot \`${name}\`[${i}] has ${arr.length} values; parameter ${i} has ${this.params[i]!.size}`, name);
        }
      });
    }
    tf.tidy(() => {
      for (const name of names) {
        state.slots[name]!.forEach((arr, i) => this.slot(name, i).assign(tf.tensor(arr, this.params[i]!.shape, 'float32')));
      }
    });
    this.updates = state.updates;
  }

  dispose(): void {
    for (const vars of Object.values(this.slots)) for (const v of vars) v.dispose();
  }
}

export interface LarsOptions {
  readonly momentum: number;
  readonly weightDecay: number;
  /** Trust coefficient η. */
  readonly eta: number;
}

export { FUSED_LARS_KERNEL };

/**
 * LARS (You et al. 2017) as in the official BYOL code: u = g + wd·p; u ← u·η‖p‖/‖u‖ (1 when either norm
 * is 0); μ ← m·μ + u; p ← p − lr·μ. Excluded parameters skip both the decay and the adaptation.
 */
export class Lars extends Optimizer {
  readonly kind = 'lars';
  constructor(params: readonly tf.Variable[], private readonly o: LarsOptions, exclude = isBiasOrNorm) {
    super(params, exclude, ['mu']);
  }

  protected update(i: number, grad: tf.Tensor, lr: number): void {
    const p = this.params[i]!;
    const mu = this.slot('mu', i);
    const attrs: LarsAttrs = { lr, weightDecay: this.o.weightDecay, momentum: this.o.momentum, eta: this.o.eta, adapt: !this.excluded[i] };
    // A backend may bring the whole step as one kernel (the native backend does: one pass instead of ~8).
    const [newP, newMu] =
      tf.getKernel(FUSED_LARS_KERNEL, tf.getBackend()) && p.dtype === 'float32'
        ? (tf.engine().runKernel(FUSED_LARS_KERNEL, { p, g: grad, mu }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[])
        : larsUpdateReference(p, grad, mu, attrs);
    mu.assign(newMu!);
    p.assign(newP!);
  }
}

export interface SgdOptions {
  readonly momentum: number;
  readonly weightDecay: number;
  readonly nesterov: boolean;
}

/** SGD with momentum, as torch.optim.SGD (dampening 0): b ← m·b + (g + wd·p); p ← p − lr·b. */
export class Sgd extends Optimizer {
  readonly kind = 'sgd';
  constructor(params: readonly tf.Variable[], private readonly o: SgdOptions, exclude = isBiasOrNorm) {
    super(params, exclude, ['mu']);
  }

  protected update(i: number, grad: tf.Tensor, lr: number): void {
    const p = this.params[i]!;
    const d = this.excluded[i] || this.o.weightDecay === 0 ? grad : tf.add(grad, tf.mul(p, this.o.weightDecay));
    const mu = this.slot('mu', i);
    mu.assign(tf.add(tf.mul(mu, this.o.momentum), d));
    const step = this.o.nesterov ? tf.add(d, tf.mul(mu, this.o.momentum)) : mu;
    p.assign(tf.sub(p, tf.mul(step, lr)));
  }
}

export interface AdamWOptions {
  readonly beta1: number;
  readonly beta2: number;
  readonly epsilon: number;
  readonly weightDecay: number;
}

/**
 * AdamW (Loshchilov & Hutter 2019) as torch.optim.AdamW: decoupled decay p ← p·(1 − lr·wd), then the
 * bias-corrected Adam step p ← p − lr·m̂ / (√v̂ + ε).
 */
export class AdamW extends Optimizer {
  readonly kind = 'adamw';
  constructor(params: readonly tf.Variable[], private readonly o: AdamWOptions, exclude = isBiasOrNorm) {
    super(params, exclude, ['m', 'v']);
  }

  protected update(i: number, grad: tf.Tensor, lr: number): void {
    const { beta1, beta2, epsilon, weightDecay } = this.o;
    const p = this.params[i]!;
    const m = this.slot('m', i);
    const v = this.slot('v', i);
    m.assign(tf.add(tf.mul(m, beta1), tf.mul(grad, 1 - beta1)));
    v.assign(tf.add(tf.mul(v, beta2), tf.mul(tf.square(grad), 1 - beta2)));
    const c1 = 1 - beta1 ** this.updates;
    const c2 = 1 - beta2 ** this.updates;
    const denom = tf.add(tf.div(tf.sqrt(v), Math.sqrt(c2)), epsilon);
    const decayed = this.excluded[i] || weightDecay === 0 ? p : tf.mul(p, 1 - lr * weightDecay);
    p.assign(tf.sub(decayed, tf.mul(tf.div(m, denom), lr / c1)));
  }
}
