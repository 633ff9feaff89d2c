import { invalidOption } from '../errors.js';
import { validateEncoderOption, type EncoderOption } from '../nets/encoder.js';
import type { BatchNormConfig } from '../nets/init.js';
import type { TauSchedule } from './tau.js';

export type OptimizerName = 'lars' | 'sgd' | 'adamw';
export type LearnerMode = 'byol' | 'simsiam';

/**
 * Options of {@link Byol}. Only `encoder`, `batchSize` and `totalSteps` are required; every default is
 * the paper's (Grill et al. 2020, arXiv 2006.07733) or the official code's, cited beside it.
 */
export interface ByolOptions {
  /** The encoder f: a built-in name or spec, a tf.LayersModel, or a factory. See {@link EncoderOption}. */
  readonly encoder: EncoderOption;
  /** Images per step. Scales the learning rate (lr = base × batchSize / 256, App. B). At least 2 (batch norm). */
  readonly batchSize: number;
  /** Steps in the whole run: the horizon of the τ and learning-rate cosines. */
  readonly totalSteps: number;
  /** Projector g: Linear → BN → ReLU → Linear. Default hidden 4096, output 256 (§3.3). */
  readonly projector?: { readonly hiddenDim?: number; readonly outputDim?: number };
  /**
   * Predictor q, same shape as the projector, output = projector output. Default hidden 4096 (§3.3).
   * `false` removes it (ablation, §5 / Table 5: BYOL then collapses).
   */
  readonly predictor?: false | { readonly hiddenDim?: number };
  /**
   * `byol` (default): a separate target network updated by EMA. `simsiam`: no target network, the target
   * branch is the online network under stop-gradient (Chen & He 2021; the paper's τ = 0 limit without
   * separate target batch-norm statistics). `tau`, `tauSchedule` and `targetInit` do not apply.
   */
  readonly mode?: LearnerMode;
  /** τ_base, the target EMA decay at step 0. Default 0.996 (§3.3). Any value in [0, 1]: 1 = fixed random target, 0 = the online weights. */
  readonly tau?: number;
  /** Default `cosine` from τ_base to 1 (§3.3); `constant` keeps τ_base (for the fixed-τ ablations, Table 5a). */
  readonly tauSchedule?: TauSchedule;
  /**
   * How the target's weights start. `copy` (default): a copy of the online weights (byol-pytorch, solo-learn,
   * lightly). `independent`: their own random initialization, as the official code (it initializes both
   * networks separately).
   */
  readonly targetInit?: 'copy' | 'independent';
  /** β, weight of the in-batch negatives term of InfoNCE^{α,β} (§5, Table 5b). Default 0 = BYOL. */
  readonly beta?: number;
  /** α, temperature of that term. Default 0.1 (SimCLR's usual value). Used only when beta > 0. */
  readonly temperature?: number;
  /** Default `lars` (App. B). */
  readonly optimizer?: OptimizerName;
  /**
   * Learning rate per 256 images. Default: 0.2 for LARS (App. B); 0.05 for SGD (SimSiam's base rate);
   * 1e-3 for AdamW (Loshchilov & Hutter's usual value).
   */
  readonly baseLearningRate?: number;
  /** Default 1.5e-6 (App. B), for every optimizer; never applied to biases and batch-norm parameters. */
  readonly weightDecay?: number;
  /** Momentum of LARS and SGD. Default 0.9 (App. B). */
  readonly momentum?: number;
  /** LARS trust coefficient η. Default 1e-3 (App. B; official `lars`). */
  readonly larsEta?: number;
  /** Nesterov momentum for SGD. Default false. */
  readonly nesterov?: boolean;
  /** AdamW β₁, β₂, ε. Default 0.9, 0.999, 1e-8 (torch.optim.AdamW). */
  readonly adamBeta1?: number;
  readonly adamBeta2?: number;
  readonly adamEpsilon?: number;
  /** Warm-up steps. Default: warmupEpochs × stepsPerEpoch when stepsPerEpoch is given, else 1 % of totalSteps (10 of the paper's 1000 epochs). */
  readonly warmupSteps?: number;
  /** Steps per epoch, only to turn warmupEpochs into steps. */
  readonly stepsPerEpoch?: number;
  /** Default 10 (App. B). */
  readonly warmupEpochs?: number;
  /** Batch norm in the built-in encoders and both heads. Default decay 0.9, ε = 1e-5 (official `bn_config`). */
  readonly batchNorm?: { readonly momentum?: number; readonly epsilon?: number };
  /** Seed for the built-in networks' initial weights. Default: unseeded. */
  readonly seed?: number;
}

export interface ResolvedByolOptions {
  readonly encoder: EncoderOption;
  readonly batchSize: number;
  readonly totalSteps: number;
  readonly projector: { readonly hiddenDim: number; readonly outputDim: number };
  readonly predictor: false | { readonly hiddenDim: number };
  readonly mode: LearnerMode;
  readonly tau: number;
  readonly tauSchedule: TauSchedule;
  readonly targetInit: 'copy' | 'independent';
  readonly beta: number;
  readonly temperature: number;
  readonly optimizer: OptimizerName;
  readonly baseLearningRate: number;
  readonly weightDecay: number;
  readonly momentum: number;
  readonly larsEta: number;
  readonly nesterov: boolean;
  readonly adamBeta1: number;
  readonly adamBeta2: number;
  readonly adamEpsilon: number;
  readonly warmupSteps: number;
  readonly batchNorm: BatchNormConfig;
  readonly seed: number | undefined;
}

const KNOWN_KEYS: ReadonlySet<string> = new Set([
  'encoder', 'batchSize', 'totalSteps', 'projector', 'predictor', 'mode', 'tau', 'tauSchedule', 'targetInit',
  'beta', 'temperature', 'optimizer', 'baseLearningRate', 'weightDecay', 'momentum', 'larsEta', 'nesterov',
  'adamBeta1', 'adamBeta2', 'adamEpsilon', 'warmupSteps', 'stepsPerEpoch', 'warmupEpochs', 'batchNorm', 'seed',
]);

export const DEFAULT_BASE_LEARNING_RATE: Readonly<Record<OptimizerName, number>> = { lars: 0.2, sgd: 0.05, adamw: 1e-3 };

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

function positiveInt(name: string, v: unknown): number {
  if (!(Number.isInteger(v) && (v as number) >= 1)) throw invalidOption(name, 'a positive integer', v);
  return v as number;
}
function nonNegativeInt(name: string, v: unknown): number {
  if (!(Number.isInteger(v) && (v as number) >= 0)) throw invalidOption(name, 'a non-negative integer', v);
  return v as number;
}
function positive(name: string, v: unknown): number {
  if (!(isNum(v) && v > 0)) throw invalidOption(name, 'a finite number > 0', v);
  return v;
}
function nonNegative(name: string, v: unknown): number {
  if (!(isNum(v) && v >= 0)) throw invalidOption(name, 'a finite number ≥ 0', v);
  return v;
}
function unitClosed(name: string, v: unknown): number {
  if (!(isNum(v) && v >= 0 && v <= 1)) throw invalidOption(name, 'a number in [0, 1]', v);
  return v;
}
function unitOpen(name: string, v: unknown): number {
  if (!(isNum(v) && v >= 0 && v < 1)) throw invalidOption(name, 'a number in [0, 1)', v);
  return v;
}
function oneOf<T extends string>(name: string, v: unknown, allowed: readonly T[]): T {
  if (!(allowed as readonly unknown[]).includes(v)) throw invalidOption(name, `one of ${allowed.map((a) => `"${a}"`).join(', ')}`, v);
  return v as T;
}
function object(name: string, v: unknown): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw invalidOption(name, 'an object', v);
  return v as Record<string, unknown>;
}

/**
 * Fills in defaults and checks every option, throwing a {@link ByolError} (code `INVALID_OPTION`) that names
 * the first bad option and what it allows.
 */
export function resolveByolOptions(options: ByolOptions): ResolvedByolOptions {
  const o = object('options', options) as ByolOptions & Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!KNOWN_KEYS.has(key)) throw invalidOption(key, 'a known option (unknown name; check its spelling)', o[key]);
  }
  if (o.encoder === undefined) throw invalidOption('encoder', 'given (a built-in name, a tf.LayersModel or a factory)', undefined);
  validateEncoderOption(o.encoder);

  const batchSize = positiveInt('batchSize', o.batchSize);
  if (batchSize < 2) {
    throw invalidOption('batchSize', 'at least 2: the projector and predictor batch norms need two or more images per batch', batchSize);
  }
  const totalSteps = positiveInt('totalSteps', o.totalSteps);

  const proj = o.projector === undefined ? {} : object('projector', o.projector);
  const projector = {
    hiddenDim: positiveInt('projector.hiddenDim', proj['hiddenDim'] ?? 4096),
    outputDim: positiveInt('projector.outputDim', proj['outputDim'] ?? 256),
  };
  let predictor: ResolvedByolOptions['predictor'];
  if (o.predictor === false) predictor = false;
  else {
    const pred = o.predictor === undefined ? {} : object('predictor', o.predictor);
    predictor = { hiddenDim: positiveInt('predictor.hiddenDim', pred['hiddenDim'] ?? 4096) };
  }

  const optimizer = oneOf<OptimizerName>('optimizer', o.optimizer ?? 'lars', ['lars', 'sgd', 'adamw']);
  let warmupSteps: number;
  if (o.warmupSteps !== undefined) warmupSteps = nonNegativeInt('warmupSteps', o.warmupSteps);
  else {
    const epochs = nonNegative('warmupEpochs', o.warmupEpochs ?? 10);
    warmupSteps =
      o.stepsPerEpoch !== undefined
        ? Math.round(epochs * positiveInt('stepsPerEpoch', o.stepsPerEpoch))
        : Math.round(totalSteps * 0.01);
  }
  if (warmupSteps >= totalSteps) {
    throw invalidOption('warmupSteps', `less than totalSteps (${totalSteps})`, warmupSteps);
  }

  const bn = o.batchNorm === undefined ? {} : object('batchNorm', o.batchNorm);
  const seed = o.seed === undefined ? undefined : nonNegativeInt('seed', o.seed);

  return {
    encoder: o.encoder,
    batchSize,
    totalSteps,
    projector,
    predictor,
    mode: oneOf<LearnerMode>('mode', o.mode ?? 'byol', ['byol', 'simsiam']),
    tau: unitClosed('tau', o.tau ?? 0.996),
    tauSchedule: oneOf<TauSchedule>('tauSchedule', o.tauSchedule ?? 'cosine', ['cosine', 'constant']),
    targetInit: oneOf('targetInit', o.targetInit ?? 'copy', ['copy', 'independent'] as const),
    beta: nonNegative('beta', o.beta ?? 0),
    temperature: positive('temperature', o.temperature ?? 0.1),
    optimizer,
    baseLearningRate: positive('baseLearningRate', o.baseLearningRate ?? DEFAULT_BASE_LEARNING_RATE[optimizer]),
    weightDecay: nonNegative('weightDecay', o.weightDecay ?? 1.5e-6),
    momentum: unitOpen('momentum', o.momentum ?? 0.9),
    larsEta: positive('larsEta', o.larsEta ?? 1e-3),
    nesterov: booleanOption('nesterov', o.nesterov ?? false),
    adamBeta1: unitOpen('adamBeta1', o.adamBeta1 ?? 0.9),
    adamBeta2: unitOpen('adamBeta2', o.adamBeta2 ?? 0.999),
    adamEpsilon: positive('adamEpsilon', o.adamEpsilon ?? 1e-8),
    warmupSteps,
    batchNorm: {
      momentum: unitOpen('batchNorm.momentum', bn['momentum'] ?? 0.9),
      epsilon: positive('batchNorm.epsilon', bn['epsilon'] ?? 1e-5),
    },
    seed,
  };
}

function booleanOption(name: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw invalidOption(name, 'true or false', v);
  return v;
}

