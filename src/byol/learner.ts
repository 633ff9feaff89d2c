import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { ByolError } from '../errors.js';
import { buildEncoderPair, type Encoder, type EncoderFunction } from '../nets/encoder.js';
import { mlpHead } from '../nets/mlp.js';
import { layersNet, type Net } from '../nets/net.js';
import { leanVariableGrads } from '../train/gradients.js';
import { AdamW, Lars, Sgd, type Optimizer, type OptimizerState } from '../train/optimizer.js';
import { learningRateAt } from '../train/schedule.js';
import { copyVariables, emaUpdate, stopGradient } from './ema.js';
import { collapseStd, negativesTerm, symmetricLoss } from './loss.js';
import { resolveByolOptions, type ByolOptions, type ResolvedByolOptions } from './options.js';
import { targetTau } from './tau.js';

/** What one training step reports. */
export interface StepResult {
  /** Steps done, this one included. */
  readonly step: number;
  /** The symmetrized loss of this step (BYOL: in [0, 8]; plus β times the negatives term). */
  readonly loss: number;
  /** τ used for the EMA update after this step. */
  readonly tau: number;
  /** Learning rate of this step. */
  readonly learningRate: number;
  /** Std over the batch of the l2-normalized online projections, mean over dimensions (≈ 1/√d healthy, → 0 collapsed). */
  readonly collapse: number;
}

/** Everything needed to continue a run exactly: weights, batch-norm statistics, optimizer slots and the step. */
export interface LearnerState {
  readonly step: number;
  readonly optimizer: OptimizerState;
  /** Per group, one array per variable, in the learner's order. */
  readonly tensors: Readonly<Record<'onlineWeights' | 'onlineState' | 'targetWeights' | 'targetState', readonly Float32Array[]>>;
}

/** The online network θ: encoder → projector → predictor. */
interface OnlineNets {
  readonly encoder: Encoder;
  readonly projector: Net;
  readonly predictor: Net | null;
}
/** The target network ξ: encoder → projector. */
interface TargetNets {
  readonly encoder: Encoder;
  readonly projector: Net;
}

/**
 * The BYOL learner (Grill et al. 2020, §3): one call to {@link Byol.step} with two augmented views of a
 * batch is one training step — online forward and backward on both views, the target's projections,
 * the symmetrized loss, one optimizer update, then the EMA update of the target.
 */
export class Byol {
  readonly options: ResolvedByolOptions;
  private readonly online: OnlineNets;
  /** Null in SimSiam mode. */
  private readonly target: TargetNets | null;
  private readonly optimizer: Optimizer;
  private readonly onlineVars: readonly tf.Variable[];
  private steps = 0;
  private disposed = false;

  constructor(options: ByolOptions) {
    const o = resolveByolOptions(options);
    this.options = o;
    const seedAt = (k: number) => (o.seed === undefined ? {} : { seed: o.seed + k });
    const pair = buildEncoderPair(o.encoder, { batchNorm: o.batchNorm, seed: o.seed });
    const d = pair.online.featureDim;
    const out = o.projector.outputDim;
    const projectorOf = (k: number) =>
      layersNet(mlpHead({ inputDim: d, hiddenDim: o.projector.hiddenDim, outputDim: out, batchNorm: o.batchNorm, ...seedAt(k) }));
    this.online = {
      encoder: pair.online,
      projector: projectorOf(101),
      predictor:
        o.predictor === false
          ? null
          : layersNet(mlpHead({ inputDim: out, hiddenDim: o.predictor.hiddenDim, outputDim: out, batchNorm: o.batchNorm, ...seedAt(202) })),
    };
    if (o.mode === 'byol') {
      this.target = { encoder: pair.target, projector: projectorOf(303) };
      if (o.targetInit === 'copy') {
        copyVariables(this.targetTrainable(), this.onlineTargetPart());
        copyVariables([...this.target.encoder.state, ...this.target.projector.state], [...pair.online.state, ...this.online.projector.state]);
      }
    } else {
      pair.target.dispose();
      this.target = null;
    }
    this.onlineVars = [...this.onlineTargetPart(), ...(this.online.predictor?.trainable ?? [])];
    this.optimizer = makeOptimizer(o, this.onlineVars);
  }

  /** The online encoder f_θ: what you keep after training. */
  get encoder(): tfl.LayersModel | EncoderFunction {
    return this.online.encoder.model;
  }

  /** The target encoder f_ξ (null in SimSiam mode). */
  get targetEncoder(): tfl.LayersModel | EncoderFunction | null {
    return this.target?.encoder.model ?? null;
  }

  /** Feature size of the encoder. */
  get featureDim(): number {
    return this.online.encoder.featureDim;
  }

  /** Steps done so far. */
  get stepCount(): number {
    return this.steps;
  }

  /** The online trainable weights in optimizer order: encoder, projector, predictor. */
  get onlineWeights(): readonly tf.Variable[] {
    return this.onlineVars;
  }

  /** The target trainable weights, paired with the first entries of {@link onlineWeights} (empty in SimSiam mode). */
  get targetWeights(): readonly tf.Variable[] {
    return this.target ? this.targetTrainable() : [];
  }

  /** Running batch-norm statistics of the online network (encoder, projector, predictor). */
  get onlineState(): readonly tf.Variable[] {
    return [...this.online.encoder.state, ...this.online.projector.state, ...(this.online.predictor?.state ?? [])];
  }

  /** Running batch-norm statistics of the target network (encoder, projector); its own forward passes update them. */
  get targetState(): readonly tf.Variable[] {
    return this.target ? [...this.target.encoder.state, ...this.target.projector.state] : [];
  }

  /** τ after step `step` (0-based) of this run. */
  tauAt(step: number): number {
    return targetTau(step, this.options.totalSteps, this.options.tau, this.options.tauSchedule);
  }

  /** Learning rate of step `step` (0-based) of this run. */
  learningRateAt(step: number): number {
    const o = this.options;
    return learningRateAt(step, { base: o.baseLearningRate, batchSize: o.batchSize, warmupSteps: o.warmupSteps, totalSteps: o.totalSteps });
  }

  /**
   * One training step on two augmented views of the same batch of images ([N, H, W, C] float32, N ≥ 2,
   * the same shape). Returns the step's loss, τ, learning rate and collapse metric.
   */
  async step(view1: tf.Tensor, view2: tf.Tensor): Promise<StepResult> {
    this.assertLive();
    this.checkViews(view1, view2);
    const k = this.steps;
    const lr = this.learningRateAt(k);
    const tau = this.tauAt(k);
    const [loss, collapse] = tf.tidy(() => {
      const v1 = view1 as tf.Tensor4D;
      const v2 = view2 as tf.Tensor4D;
      // The target's projections are computed outside the gradient tape: no gradient can reach ξ.
      const targets = this.target ? ([this.targetProject(v1), this.targetProject(v2)] as const) : null;
      let collapseMetric: tf.Scalar | null = null;
      const { value, grads } = leanVariableGrads(() => {
        const z1 = this.onlineProject(v1);
        const z2 = this.onlineProject(v2);
        collapseMetric = tf.keep(tf.div(tf.add(collapseStd(z1), collapseStd(z2)), 2) as tf.Scalar);
        const p1 = this.predict(z1);
        const p2 = this.predict(z2);
        const t1 = targets ? targets[0] : stopGradient(z1);
        const t2 = targets ? targets[1] : stopGradient(z2);
        let l: tf.Scalar = symmetricLoss(p1, p2, t1, t2);
        if (this.options.beta > 0) {
          const a = this.options.temperature;
          const neg = tf.add(negativesTerm(p1, t1, t2, a), negativesTerm(p2, t2, t1, a));
          l = tf.add(l, tf.mul(neg, this.options.beta));
        }
        return l;
      }, this.onlineVars);
      this.optimizer.apply(this.onlineVars.map((v) => grads[v.name]!), lr);
      if (this.target) emaUpdate(this.targetTrainable(), this.onlineTargetPart(), tau);
      return [value, collapseMetric!];
    });
    const [lossValue, collapseValue] = await Promise.all([loss.data(), collapse.data()]);
    loss.dispose();
    collapse.dispose();
    this.steps = k + 1;
    return { step: this.steps, loss: lossValue[0]!, tau, learningRate: lr, collapse: collapseValue[0]! };
  }

  /** Encoder features of a batch of images in inference mode (running batch-norm statistics). */
  embed(images: tf.Tensor4D): tf.Tensor2D {
    this.assertLive();
    return tf.tidy(() => this.online.encoder.apply(images, false) as tf.Tensor2D);
  }

  /** Optimizer state and step count, for an exact resume. */
  async getTrainingState(): Promise<{ step: number; optimizer: OptimizerState }> {
    return { step: this.steps, optimizer: await this.optimizer.getState() };
  }

  setTrainingState(state: { step: number; optimizer: OptimizerState }): void {
    if (!(Number.isInteger(state.step) && state.step >= 0)) {
      throw new ByolError('INVALID_STATE', `training state \`step\` must be a non-negative integer; got ${state.step}`, 'step');
    }
    this.optimizer.setState(state.optimizer);
    this.steps = state.step;
  }

  /** A snapshot of the whole training state (see {@link LearnerState}). */
  async getState(): Promise<LearnerState> {
    this.assertLive();
    const read = (vs: readonly tf.Variable[]) => Promise.all(vs.map(async (v) => new Float32Array(await v.data<'float32'>())));
    return {
      step: this.steps,
      optimizer: await this.optimizer.getState(),
      tensors: {
        onlineWeights: await read(this.onlineWeights),
        onlineState: await read(this.onlineState),
        targetWeights: await read(this.targetWeights),
        targetState: await read(this.targetState),
      },
    };
  }

  /**
   * The learner's networks as tfjs LayersModels (where they are ones: a function encoder is not): the online encoder,
   * projector and predictor, and the target's encoder and projector (null in SimSiam mode). For exporting the whole
   * learner; they are the learner's own, not copies.
   */
  networks(): {
    online: { encoder: tfl.LayersModel | null; projector: tfl.LayersModel | null; predictor: tfl.LayersModel | null };
    target: { encoder: tfl.LayersModel | null; projector: tfl.LayersModel | null } | null;
  } {
    const model = (n: { model?: unknown; layersModel?: unknown } | null | undefined) => {
      const m = n?.layersModel ?? n?.model;
      return m instanceof tfl.LayersModel ? m : null;
    };
    return {
      online: { encoder: model(this.online.encoder), projector: model(this.online.projector), predictor: model(this.online.predictor) },
      target: this.target ? { encoder: model(this.target.encoder), projector: model(this.target.projector) } : null,
    };
  }

  /**
   * Restores a snapshot from {@link getState} (of a learner with the same architecture and options). Checks every
   * count and size first and changes nothing if one is off.
   */
  setState(state: LearnerState): void {
    this.assertLive();
    const groups = {
      onlineWeights: this.onlineWeights,
      onlineState: this.onlineState,
      targetWeights: this.targetWeights,
      targetState: this.targetState,
    } as const;
    for (const [name, vars] of Object.entries(groups)) {
      const arrays = state.tensors[name as keyof typeof groups];
      if (!arrays || arrays.length !== vars.length) {
        throw new ByolError('INVALID_STATE', `state \`${name}\` has ${arrays?.length ?? 0} arrays; this learner has ${vars.length} (a checkpoint of another architecture?)`, name);
      }
      arrays.forEach((a, i) => {
        if (a.length !== vars[i]!.size) {
          throw new ByolError('INVALID_STATE', `state \`${name}\`[${i}] has ${a.length} values; this learner's is [${vars[i]!.shape}] (a checkpoint of another architecture?)`, name);
        }
      });
    }
    this.setTrainingState({ step: state.step, optimizer: state.optimizer });
    tf.tidy(() => {
      for (const [name, vars] of Object.entries(groups)) {
        state.tensors[name as keyof typeof groups].forEach((a, i) => vars[i]!.assign(tf.tensor(a, vars[i]!.shape, 'float32')));
      }
    });
  }

  /** Frees every weight and optimizer slot (the user's own encoder model included). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.optimizer.dispose();
    this.online.encoder.dispose();
    this.online.projector.dispose();
    this.online.predictor?.dispose();
    this.target?.encoder.dispose();
    this.target?.projector.dispose();
  }

  private onlineProject(x: tf.Tensor4D): tf.Tensor2D {
    return this.online.projector.apply(this.checkFeatures(this.online.encoder.apply(x, true)), true) as tf.Tensor2D;
  }

  private targetProject(x: tf.Tensor4D): tf.Tensor2D {
    const t = this.target!;
    return t.projector.apply(t.encoder.apply(x, true), true) as tf.Tensor2D;
  }

  private predict(z: tf.Tensor2D): tf.Tensor2D {
    return this.online.predictor ? (this.online.predictor.apply(z, true) as tf.Tensor2D) : z;
  }

  /** The online weights that have a target twin: encoder and projector. */
  private onlineTargetPart(): tf.Variable[] {
    return [...this.online.encoder.trainable, ...this.online.projector.trainable];
  }

  private targetTrainable(): tf.Variable[] {
    return [...this.target!.encoder.trainable, ...this.target!.projector.trainable];
  }

  private checkFeatures(f: tf.Tensor): tf.Tensor2D {
    const d = this.online.encoder.featureDim;
    if (f.rank !== 2 || f.shape[1] !== d) {
      throw new ByolError('INVALID_ENCODER', `option \`encoder\` must output [batch, ${d}] features; it output [${f.shape}]`, 'encoder');
    }
    return f as tf.Tensor2D;
  }

  private checkViews(view1: tf.Tensor, view2: tf.Tensor): void {
    for (const [name, v] of [['view1', view1], ['view2', view2]] as const) {
      if (!(v instanceof tf.Tensor) || v.isDisposed) throw new ByolError('INVALID_INPUT', `\`${name}\` must be a live tf.Tensor`, name);
      if (v.rank !== 4) throw new ByolError('INVALID_INPUT', `\`${name}\` must be an image batch [batch, height, width, channels]; got shape [${v.shape}]`, name);
      if (v.dtype !== 'float32') throw new ByolError('INVALID_INPUT', `\`${name}\` must be float32 (normalized images); got ${v.dtype}`, name);
      const expected = this.online.encoder.inputShape;
      v.shape.slice(1).forEach((dim, i) => {
        const want = expected[i];
        if (want != null && want !== dim) {
          throw new ByolError('INVALID_INPUT', `\`${name}\` has image shape [${v.shape.slice(1)}]; the encoder takes [${expected.map((e) => e ?? '?')}]`, name);
        }
      });
    }
    if (!tf.util.arraysEqual(view1.shape, view2.shape)) {
      throw new ByolError('INVALID_INPUT', `\`view2\` must have the shape of \`view1\` [${view1.shape}]; got [${view2.shape}]`, 'view2');
    }
    if (view1.shape[0]! < 2) {
      throw new ByolError('INVALID_INPUT', `\`view1\` holds ${view1.shape[0]} image; batch norm in the heads needs at least 2 per batch`, 'view1');
    }
  }

  private assertLive(): void {
    if (this.disposed) throw new ByolError('INVALID_STATE', 'this Byol learner has been disposed');
  }
}

function makeOptimizer(o: ResolvedByolOptions, params: readonly tf.Variable[]): Optimizer {
  switch (o.optimizer) {
    case 'lars':
      return new Lars(params, { momentum: o.momentum, weightDecay: o.weightDecay, eta: o.larsEta });
    case 'sgd':
      return new Sgd(params, { momentum: o.momentum, weightDecay: o.weightDecay, nesterov: o.nesterov });
    case 'adamw':
      return new AdamW(params, { beta1: o.adamBeta1, beta2: o.adamBeta2, epsilon: o.adamEpsilon, weightDecay: o.weightDecay });
  }
}
