/**
 * The configuration of a pretraining run (what `byol pretrain` resolves from its flags and writes to
 * `config.json`): plain JSON, every field present, `null` meaning "the library's default" (cited there).
 */
import type * as tfl from '@tensorflow/tfjs-layers';
import type { ByolOptions, OptimizerName } from '../byol/options.js';
import { ByolError, describe } from '../errors.js';
import { BUILTIN_ENCODERS, type BuiltinEncoderName } from '../nets/encoder.js';
import { resolveViewsConfig, VIEW_ABLATIONS, VIEW_PRESETS, type ViewAblation, type ViewPresetName, type ViewsConfig } from '../views/options.js';

export interface PretrainConfig {
  /** Dataset spec `KIND[:PATH][@SPLIT]` (see openDataset). */
  readonly dataset: string;
  /** Pretrain on the first `limit` images only (null: all). */
  readonly limit: number | null;
  /** A built-in encoder name, or the path of a tfjs layers-model folder. */
  readonly encoder: string;
  /** ResNet width multiplier. */
  readonly width: number;
  /** View pipeline preset: `cifar`, `imagenet` or `grey` (views/options.ts). */
  readonly preset: ViewPresetName;
  /** A Table-17 augmentation ablation, or null. */
  readonly ablation: ViewAblation | null;
  /** RandomResizedCrop area range; null: the preset's (paper: 0.08–1). */
  readonly cropScale: readonly [number, number] | null;
  /** Horizontal-flip probability of both views; null: the preset's (paper: 0.5). */
  readonly flip: number | null;
  readonly epochs: number;
  readonly batchSize: number;
  readonly optimizer: OptimizerName;
  /** Base learning rate per 256 images; null: the optimizer's default (LARS 0.2, App. B). */
  readonly lr: number | null;
  readonly weightDecay: number | null;
  readonly larsEta: number | null;
  /** τ_base; null: 0.996 (§3.3). */
  readonly tau: number | null;
  readonly tauSchedule: 'cosine' | 'constant';
  /** false removes the predictor (ablation: collapses, Table 5). */
  readonly predictor: boolean;
  readonly mode: 'byol' | 'simsiam';
  /** Weight of the negatives term (Table 5b); 0 = BYOL. */
  readonly beta: number;
  readonly projectorHidden: number | null;
  readonly projectorOut: number | null;
  readonly predictorHidden: number | null;
  /** Warm-up epochs; null: 10 (App. B), capped at a tenth of a short run. Must be less than `epochs`. */
  readonly warmupEpochs: number | null;
  readonly seed: number;
  /** Steps between checkpoints; null: one per epoch. A checkpoint is also written at the end. */
  readonly checkpointEvery: number | null;
  /** Checkpoints kept (the newest). */
  readonly keep: number;
  /** Epochs between kNN evaluations when the dataset has labels; 0: never (the end still has one). */
  readonly knnEvery: number;
  /** Bank: the first N training images; test: the first N test images. */
  readonly knnBank: number;
  readonly knnTest: number;
  /** k = 200, T = 0.1 (InstDisc, solo-learn). */
  readonly knnK: number;
  /**
   * Steps between collapse diagnostics of the encoder's features on the current batch (their normalized spread and
   * effective rank, RankMe), written to metrics.jsonl; 0: never. Default 50: one extra inference pass per 50 steps.
   */
  readonly diagnoseEvery: number;
  readonly knnTemperature: number;
  /**
   * Image folders: the side images are decoded to before the views crop them; null: 256 for the `imagenet` preset
   * (the views then crop and resize to 224), the views' size for `cifar` (32) and `grey` (28).
   */
  readonly imageSize: number | null;
  /** Image folders: how a picture becomes square (`cover`: centre crop, default; `fill`; `contain`). */
  readonly fit: 'cover' | 'fill' | 'contain';
  /** Image folders: leave unreadable or corrupt files out (each reported) instead of stopping. Default false. */
  readonly skipBad: boolean;
  /**
   * Labelled image folders without train/ and val/ sub-folders: the share held out of pretraining for kNN (chosen by a
   * hash of each path). 0: pretrain on every image, without kNN. Default 0.1.
   */
  readonly holdout: number;
  /**
   * Input normalization `(x − mean) / std` per channel, x in [0, 1]; null: the preset's (CIFAR's or ImageNet's
   * statistics). Weights trained elsewhere expect their own: `byol pretrain --init` / `--encoder DIR` take them from the
   * model (ImageNet's for imported PyTorch and official BYOL weights, whose code normalizes so).
   */
  readonly mean: readonly number[] | null;
  readonly std: readonly number[] | null;
}

/** The backend a run trains on (restored when it is resumed). */
export interface BackendRecord {
  readonly name: 'native' | 'wasm' | 'cpu';
  readonly precision: 'fp32' | 'bf16';
}

export function describeBackend(b: BackendRecord): string {
  return b.precision === 'bf16' ? `${b.name} (bf16)` : b.name;
}

/** What `byol pretrain --resume` may change in a run: none of it changes the model or the data order. */
export const RESUME_CHANGES = ['lr', 'warmupEpochs', 'checkpointEvery', 'keep', 'knnEvery', 'knnBank', 'knnTest', 'skipBad', 'diagnoseEvery'] as const;
export type ResumeChange = (typeof RESUME_CHANGES)[number];

export const PRETRAIN_DEFAULTS: Omit<PretrainConfig, 'dataset'> = {
  limit: null,
  encoder: 'resnet18-cifar',
  width: 1,
  preset: 'cifar',
  ablation: null,
  cropScale: null,
  flip: null,
  // The paper trains 1000 epochs (its ablations 300) at batch 4096; on one CPU 100 epochs of 256 is the practical
  // default — the learning rate follows the batch as base × batch / 256 (App. B).
  epochs: 100,
  batchSize: 256,
  optimizer: 'lars',
  lr: null,
  weightDecay: null,
  larsEta: null,
  tau: null,
  tauSchedule: 'cosine',
  predictor: true,
  mode: 'byol',
  beta: 0,
  projectorHidden: null,
  projectorOut: null,
  predictorHidden: null,
  warmupEpochs: null,
  seed: 0,
  checkpointEvery: null,
  keep: 3,
  knnEvery: 1,
  knnBank: 10_000,
  knnTest: 2_000,
  knnK: 200,
  knnTemperature: 0.1,
  diagnoseEvery: 50,
  imageSize: null,
  fit: 'cover',
  skipBad: false,
  holdout: 0.1,
  mean: null,
  std: null,
};

const bad = (key: string, expected: string, got: unknown) => new ByolError('INVALID_OPTION', `${key} must be ${expected}; got ${describe(got)}`, key);

/** Fills defaults and checks every field; errors name the field. */
export function resolvePretrainConfig(partial: Partial<PretrainConfig> & { dataset: string }): PretrainConfig {
  const c: PretrainConfig = { ...PRETRAIN_DEFAULTS, ...partial };
  const int = (k: keyof PretrainConfig, min: number, nullable = false) => {
    const v = c[k];
    if (nullable && v === null) return;
    if (!(typeof v === 'number' && Number.isInteger(v) && v >= min)) throw bad(k, `an integer ≥ ${min}${nullable ? ' (or unset)' : ''}`, v);
  };
  const num = (k: keyof PretrainConfig, test: (v: number) => boolean, what: string, nullable = true) => {
    const v = c[k];
    if (nullable && v === null) return;
    if (!(typeof v === 'number' && Number.isFinite(v) && test(v))) throw bad(k, what, v);
  };
  if (typeof c.dataset !== 'string' || c.dataset === '') throw bad('dataset', 'a dataset spec', c.dataset);
  int('limit', 2, true);
  int('width', 1);
  int('epochs', 1);
  int('batchSize', 2);
  int('seed', 0);
  int('checkpointEvery', 1, true);
  int('keep', 1);
  int('knnEvery', 0);
  int('knnBank', 1);
  int('knnTest', 1);
  int('knnK', 1);
  int('diagnoseEvery', 0);
  int('projectorHidden', 1, true);
  int('projectorOut', 1, true);
  int('predictorHidden', 1, true);
  int('warmupEpochs', 0, true);
  num('lr', (v) => v > 0, 'a number > 0');
  num('weightDecay', (v) => v >= 0, 'a number ≥ 0');
  num('larsEta', (v) => v > 0, 'a number > 0');
  num('tau', (v) => v >= 0 && v <= 1, 'a number in [0, 1]');
  num('flip', (v) => v >= 0 && v <= 1, 'a probability in [0, 1]');
  num('beta', (v) => v >= 0, 'a number ≥ 0', false);
  num('knnTemperature', (v) => v > 0, 'a number > 0', false);
  int('imageSize', 1, true);
  num('holdout', (v) => v >= 0 && v < 1, 'a share in [0, 1)', false);
  if (!['cover', 'fill', 'contain'].includes(c.fit)) throw bad('fit', 'one of cover, fill, contain', c.fit);
  if (typeof c.skipBad !== 'boolean') throw bad('skipBad', 'true or false', c.skipBad);
  if (!(c.preset in VIEW_PRESETS)) throw bad('preset', `one of ${Object.keys(VIEW_PRESETS).join(', ')}`, c.preset);
  if (c.ablation !== null && !VIEW_ABLATIONS.includes(c.ablation)) throw bad('ablation', `one of ${VIEW_ABLATIONS.join(', ')}`, c.ablation);
  if (!['lars', 'sgd', 'adamw'].includes(c.optimizer)) throw bad('optimizer', 'one of lars, sgd, adamw', c.optimizer);
  if (c.tauSchedule !== 'cosine' && c.tauSchedule !== 'constant') throw bad('tauSchedule', 'cosine or constant', c.tauSchedule);
  if (c.mode !== 'byol' && c.mode !== 'simsiam') throw bad('mode', 'byol or simsiam', c.mode);
  if (typeof c.predictor !== 'boolean') throw bad('predictor', 'true or false', c.predictor);
  if (c.cropScale !== null) {
    const [lo, hi] = c.cropScale;
    if (!(typeof lo === 'number' && typeof hi === 'number' && lo > 0 && lo <= hi && hi <= 1)) throw bad('cropScale', 'two numbers 0 < lo ≤ hi ≤ 1', c.cropScale);
  }
  if (c.warmupEpochs !== null && c.warmupEpochs >= c.epochs) throw bad('warmupEpochs', `less than epochs (${c.epochs})`, c.warmupEpochs);
  const channels = VIEW_PRESETS[c.preset].channels;
  for (const k of ['mean', 'std'] as const) {
    const v = c[k];
    if (v === null) continue;
    if (!(Array.isArray(v) && v.length === channels && v.every((x) => typeof x === 'number' && Number.isFinite(x) && (k === 'mean' || x > 0)))) {
      throw bad(k, `${channels} ${k === 'std' ? 'positive' : 'finite'} number${channels > 1 ? 's' : ''} (one per channel of --preset ${c.preset}), or unset`, v);
    }
  }
  if ((c.mean === null) !== (c.std === null)) {
    const [given, missing] = c.mean === null ? ['std', 'mean'] : ['mean', 'std'];
    throw new ByolError('INVALID_OPTION', `${given} is given without ${missing}: give both (the input normalization) or neither`, missing);
  }
  if (typeof c.encoder !== 'string' || c.encoder === '') throw bad('encoder', `one of ${BUILTIN_ENCODERS.join(', ')} or a model folder`, c.encoder);
  return c;
}

export function isBuiltinEncoder(name: string): name is BuiltinEncoderName {
  return (BUILTIN_ENCODERS as readonly string[]).includes(name);
}

/** The view pipeline of a run: the preset with the run's crop, flip and ablation. */
export function runViews(c: PretrainConfig): ViewsConfig {
  const flip = c.flip === null ? {} : { flip: c.flip };
  return resolveViewsConfig(
    c.preset,
    {
      ...(c.cropScale === null ? {} : { crop: { scale: [c.cropScale[0], c.cropScale[1]] as [number, number] } }),
      ...(c.flip === null ? {} : { views: [flip, flip] as const }),
      ...(c.mean === null || c.std === null ? {} : { mean: c.mean, std: c.std }),
    },
    c.ablation ?? undefined,
  );
}

/** Learner options for a run; `encoder` is the loaded model for a model-folder encoder. */
export function learnerOptions(c: PretrainConfig, stepsPerEpoch: number, encoder: tfl.LayersModel | null, seedOffset = 0): ByolOptions {
  const views = runViews(c);
  const inputShape = [views.size, views.size, views.channels] as const;
  const enc: ByolOptions['encoder'] =
    encoder ?? (isBuiltinEncoder(c.encoder) ? { name: c.encoder, inputShape, ...(c.encoder.startsWith('resnet') && c.width !== 1 ? { width: c.width } : {}) } : c.encoder as never);
  const opt = <K extends string, V>(key: K, v: V | null) => (v === null ? {} : ({ [key]: v } as Record<K, V>));
  return {
    encoder: enc,
    batchSize: c.batchSize,
    totalSteps: c.epochs * stepsPerEpoch,
    stepsPerEpoch,
    optimizer: c.optimizer,
    tauSchedule: c.tauSchedule,
    mode: c.mode,
    beta: c.beta,
    seed: c.seed + seedOffset,
    predictor: c.predictor ? opt('hiddenDim', c.predictorHidden) : false,
    projector: { ...opt('hiddenDim', c.projectorHidden), ...opt('outputDim', c.projectorOut) },
    ...opt('baseLearningRate', c.lr),
    ...opt('weightDecay', c.weightDecay),
    ...opt('larsEta', c.larsEta),
    ...opt('tau', c.tau),
    // Paper: 10 warm-up epochs (App. B) of 1000; a short run keeps the warm-up within its first tenth.
    ...(c.warmupEpochs === null
      ? { warmupSteps: Math.max(1, Math.min(10 * stepsPerEpoch, Math.round((c.epochs * stepsPerEpoch) / 10))) }
      : { warmupEpochs: c.warmupEpochs }),
  };
}
