/**
 * The whole learner as one safetensors file, for continuing a run elsewhere (the PyTorch companion, python/byol_torch)
 * and back: both networks' weights and batch-norm statistics under PyTorch's names and layouts, the optimizer's slots
 * by the same names, and in the metadata everything continuing needs — step, schedules, LARS settings, the
 * architecture, the views, the run's config and the views generator's state. Browser-safe (arrays in, arrays out).
 */
import type * as tfl from '@tensorflow/tfjs-layers';
import type { Byol, LearnerState } from '../byol/learner.js';
import { ByolError } from '../errors.js';
import { torchKeyedVariables, type TorchArray, type TorchNaming } from '../nets/torch-weights.js';

export const WHOLE_FORMAT = 'byol-whole';
/** 2: training state (optimizer slots, schedules, architecture); 1 was weights only. */
export const WHOLE_VERSION = 2;

/** The architecture of an encoder as the companion rebuilds it. */
export type Architecture =
  | {
      readonly kind: 'resnet';
      readonly depth: number;
      readonly stem: 'imagenet' | 'cifar';
      readonly width: number;
      readonly padding: 'same' | 'torch';
      /** The CIFAR stem's own padding where it is not the rule's (solo-learn's: 2). */
      readonly stemPad?: number;
      readonly inputShape: readonly [number, number, number];
    }
  | { readonly kind: 'convnet'; readonly channels: readonly number[]; readonly inputShape: readonly [number, number, number] };

const fail = (why: string) => new ByolError('INVALID_ENCODER', `the whole-learner export rebuilds byol's ResNets and ConvNet only: ${why}`, 'encoder');

/** How PyTorch names an architecture's layers: byol's ResNets carry torchvision's names, the ConvNet is numbered. */
export const namingOf = (a: Architecture): TorchNaming => (a.kind === 'resnet' ? 'name' : 'index');

/** The architecture of one of byol's encoders, read from the model itself (a built-in, or a run's imported one). */
export function describeArchitecture(model: tfl.LayersModel): Architecture {
  const input = model.inputs[0]?.shape ?? [];
  const inputShape = input.slice(1) as [number, number, number];
  if (inputShape.length !== 3 || !inputShape.every((d) => typeof d === 'number')) throw fail(`its input shape [${input}] is not fixed`);
  const byName = new Map(model.layers.map((l) => [l.name, l]));
  const conv1 = byName.get('conv1');
  if (conv1 && byName.has('layer1.0.conv1')) {
    const c = conv1.getConfig() as { kernelSize?: number[] | number; filters?: number; padding?: string };
    const k = Array.isArray(c.kernelSize) ? c.kernelSize[0] : c.kernelSize;
    const blocks = [1, 2, 3, 4].map((g) => {
      let n = 0;
      while (byName.has(`layer${g}.${n}.conv1`)) n++;
      return n;
    });
    const bottleneck = byName.has('layer1.0.conv3');
    const depths: Record<string, number> = { '2,2,2,2/0': 18, '3,4,6,3/0': 34, '3,4,6,3/1': 50, '3,4,23,3/1': 101, '3,8,36,3/1': 152, '3,24,36,3/1': 200 };
    const depth = depths[`${blocks.join(',')}/${bottleneck ? 1 : 0}`];
    if (!depth) throw fail(`a ResNet of ${blocks.join('-')} blocks`);
    if (k !== 7 && k !== 3) throw fail(`a ResNet stem of ${k}×${k}`);
    const width = (c.filters ?? 0) / 64;
    if (!(Number.isInteger(width) && width >= 1)) throw fail(`a stem of ${c.filters} filters`);
    const stem = k === 7 ? 'imagenet' : 'cifar';
    const padding = c.padding === 'same' ? 'same' : 'torch';
    // A CIFAR stem with its own padding (resnet()'s stemPadding) pads in a layer before it, or not at all.
    const pad = byName.get('conv1.pad');
    const p = pad ? (pad.getConfig() as { padding?: number[][] | number[] | number }).padding : undefined;
    const stemPad = stem === 'cifar' && c.padding === 'valid' ? (p === undefined ? 0 : Array.isArray(p) ? (Array.isArray(p[0]) ? p[0][0]! : (p[0] as number)) : p) : undefined;
    return { kind: 'resnet', depth, stem, width, padding, ...(stemPad !== undefined && stemPad !== 1 ? { stemPad } : {}), inputShape };
  }
  const layers = model.layers.filter((l) => l.getClassName() !== 'InputLayer');
  const pattern = ['Conv2D', 'BatchNormalization', 'ReLU', 'MaxPooling2D', 'Conv2D', 'BatchNormalization', 'ReLU', 'MaxPooling2D', 'Conv2D', 'BatchNormalization', 'ReLU', 'GlobalAveragePooling2D'];
  if (layers.length === pattern.length && layers.every((l, i) => l.getClassName() === pattern[i])) {
    const convs = layers.filter((l) => l.getClassName() === 'Conv2D').map((l) => l.getConfig() as { filters: number; kernelSize: number[]; strides: number[]; padding: string; useBias: boolean });
    const pools = layers.filter((l) => l.getClassName() === 'MaxPooling2D').map((l) => l.getConfig() as { poolSize: number[]; strides: number[]; padding: string });
    const convOk = convs.every((c) => c.kernelSize.every((x) => x === 3) && c.strides.every((x) => x === 1) && c.padding === 'same' && !c.useBias);
    const poolOk = pools.every((p) => p.poolSize.every((x) => x === 2) && p.strides.every((x) => x === 2) && p.padding === 'valid');
    if (convOk && poolOk) return { kind: 'convnet', channels: convs.map((c) => c.filters), inputShape };
  }
  throw fail(`model "${model.name}" is neither`);
}

/** What the metadata of a whole-learner export holds (the `byol` JSON string). */
export interface WholeInfo {
  readonly format: typeof WHOLE_FORMAT;
  readonly version: number;
  readonly step: number;
  readonly totalSteps: number;
  /** The learner's resolved options but the encoder (its architecture is `architecture`). */
  readonly learner: Readonly<Record<string, unknown>> & { readonly batchSize: number; readonly totalSteps: number; readonly warmupSteps: number; readonly optimizer: string };
  readonly architecture: Architecture;
  readonly optimizer: { readonly kind: string; readonly updates: number; readonly slots: readonly string[] };
  /** The online trainable weights' keys in the optimizer's order. */
  readonly parameters: readonly string[];
  readonly [extra: string]: unknown;
}

interface Keyed {
  readonly key: string;
  readonly shape: number[];
  readonly toTorch: (v: Float32Array) => Float32Array;
  readonly fromTorch: (v: Float32Array) => Float32Array;
}

/** Every variable of the learner (weights and statistics, both networks) with its key. */
function keyedVariables(learner: Byol): { architecture: Architecture; byVariable: Map<unknown, Keyed> } {
  const n = learner.networks();
  if (!n.online.encoder) throw fail('the encoder is a function, not a LayersModel');
  const architecture = describeArchitecture(n.online.encoder);
  const naming = namingOf(architecture);
  const byVariable = new Map<unknown, Keyed>();
  const parts: [string, tfl.LayersModel | null, TorchNaming][] = [
    ['online.encoder.', n.online.encoder, naming],
    ['online.projector.', n.online.projector, 'index'],
    ['online.predictor.', n.online.predictor, 'index'],
    ['target.encoder.', n.target?.encoder ?? null, naming],
    ['target.projector.', n.target?.projector ?? null, 'index'],
  ];
  for (const [prefix, model, how] of parts) if (model) for (const k of torchKeyedVariables(model, how, prefix)) byVariable.set(k.variable, k);
  return { architecture, byVariable };
}

const keyOf = (byVariable: Map<unknown, Keyed>, v: unknown, what: string): Keyed => {
  const k = byVariable.get(v);
  if (!k) throw new ByolError('INVALID_STATE', `${what}: a learner variable with no PyTorch name`, what);
  return k;
};

/**
 * The whole learner as tensors (PyTorch names and layouts) and metadata: the networks under `online.encoder.`,
 * `online.projector.`, `online.predictor.`, `target.encoder.`, `target.projector.`, and each optimizer slot under
 * `optimizer.SLOT.KEY` for the online weight KEY. `extra` goes into the metadata as it is (the run's config, views…).
 */
export async function exportWholeLearner(learner: Byol, extra: Readonly<Record<string, unknown>> = {}): Promise<{ tensors: Map<string, TorchArray>; info: WholeInfo }> {
  const { architecture, byVariable } = keyedVariables(learner);
  const state = await learner.getState();
  const tensors = new Map<string, TorchArray>();
  const put = (vars: readonly unknown[], arrays: readonly Float32Array[], what: string) =>
    vars.forEach((v, i) => {
      const k = keyOf(byVariable, v, what);
      tensors.set(k.key, { shape: k.shape, data: k.toTorch(arrays[i]!) });
    });
  put(learner.onlineWeights, state.tensors.onlineWeights, 'onlineWeights');
  put(learner.onlineState, state.tensors.onlineState, 'onlineState');
  put(learner.targetWeights, state.tensors.targetWeights, 'targetWeights');
  put(learner.targetState, state.tensors.targetState, 'targetState');
  const parameters = learner.onlineWeights.map((v) => keyOf(byVariable, v, 'onlineWeights').key);
  const slots = Object.keys(state.optimizer.slots);
  for (const s of slots) {
    state.optimizer.slots[s]!.forEach((a, i) => {
      const k = keyOf(byVariable, learner.onlineWeights[i], 'optimizer');
      tensors.set(`optimizer.${s}.${k.key}`, { shape: k.shape, data: k.toTorch(a) });
    });
  }
  const { encoder: _encoder, ...options } = learner.options;
  const info: WholeInfo = {
    ...extra,
    format: WHOLE_FORMAT,
    version: WHOLE_VERSION,
    step: state.step,
    totalSteps: learner.options.totalSteps,
    learner: options,
    architecture,
    optimizer: { kind: state.optimizer.kind, updates: state.optimizer.updates, slots },
    parameters,
  };
  return { tensors, info };
}

/** Parses and checks a whole-learner export's metadata; errors name `file`. */
export function parseWholeInfo(metadata: Readonly<Record<string, string>>, file: string): WholeInfo {
  const bad = (why: string) => new ByolError('INVALID_DATA', `${file}: ${why}`, file);
  const raw = metadata['byol'];
  if (raw === undefined) throw bad('no byol metadata (not written by `byol export --whole` or the PyTorch companion)');
  let info: WholeInfo;
  try {
    info = JSON.parse(raw) as WholeInfo;
  } catch (e) {
    throw bad(`its byol metadata is not JSON (${(e as Error).message})`);
  }
  if (info === null || typeof info !== 'object') throw bad('its byol metadata is not an object');
  if (info.format !== WHOLE_FORMAT) throw bad('a whole-learner export without training state (made by an earlier byol: export the run again)');
  if (!(Number.isInteger(info.version) && info.version >= 2)) throw bad(`whole-learner format ${String(info.version)} is not one this byol reads`);
  if (info.version > WHOLE_VERSION) throw bad(`written by a newer byol (whole-learner format ${info.version}; this version reads ${WHOLE_VERSION}): upgrade byol`);
  const intIn = (v: unknown, lo: number, hi: number) => Number.isInteger(v) && (v as number) >= lo && (v as number) <= hi;
  if (!intIn(info.totalSteps, 1, Number.MAX_SAFE_INTEGER)) throw bad(`totalSteps must be a positive integer; got ${JSON.stringify(info.totalSteps)}`);
  if (!intIn(info.step, 0, info.totalSteps)) throw bad(`step must be an integer in [0, ${info.totalSteps}]; got ${JSON.stringify(info.step)}`);
  const o = info.optimizer;
  if (!o || typeof o.kind !== 'string' || !intIn(o.updates, 0, Number.MAX_SAFE_INTEGER) || !Array.isArray(o.slots) || !o.slots.every((s) => typeof s === 'string')) {
    throw bad('its optimizer record must be {kind, updates (a non-negative integer), slots (names)}');
  }
  if (!Array.isArray(info.parameters) || !info.parameters.every((p) => typeof p === 'string')) throw bad('parameters must be a list of tensor names');
  return info;
}

/**
 * The learner state a whole-learner export holds, for a learner of the same architecture and options (built from the
 * export's config): every weight, statistic and optimizer slot by its PyTorch name, checked for shape. Errors name
 * `file` and the first tensor that is missing or does not fit.
 */
export function wholeLearnerState(learner: Byol, tensors: ReadonlyMap<string, TorchArray>, info: WholeInfo, file: string): LearnerState {
  const bad = (why: string) => new ByolError('INVALID_STATE', `${file}: ${why}`, file);
  const { byVariable } = keyedVariables(learner);
  const o = learner.options;
  for (const [k, want] of [['totalSteps', o.totalSteps], ['warmupSteps', o.warmupSteps], ['batchSize', o.batchSize]] as const) {
    const got = (info.learner as Record<string, unknown>)[k];
    if (got !== want) throw bad(`${k} is ${JSON.stringify(got)} in the file, ${want} for this run (exported from another run's data or options?)`);
  }
  const fromKey = (key: string, k: Keyed) => {
    const t = tensors.get(key);
    if (!t) throw bad(`no tensor ${key}`);
    if (t.shape.length !== k.shape.length || t.shape.some((d, i) => d !== k.shape[i]) || t.data.length !== k.shape.reduce((a, b) => a * b, 1)) {
      throw bad(`${key} has shape [${t.shape}], this learner's is [${k.shape}]`);
    }
    for (let i = 0; i < t.data.length; i++) if (!Number.isFinite(t.data[i]!)) throw bad(`${key} holds a value that is not finite (${t.data[i]})`);
    return k.fromTorch(t.data);
  };
  const group = (vars: readonly unknown[], what: string) => vars.map((v) => {
    const k = keyOf(byVariable, v, what);
    return fromKey(k.key, k);
  });
  const kind = info.optimizer.kind;
  const slotNames = o.optimizer === 'adamw' ? ['m', 'v'] : ['mu'];
  if (kind !== o.optimizer) throw bad(`its optimizer state is ${kind}'s, this run uses ${o.optimizer}`);
  const slots: Record<string, Float32Array[]> = {};
  for (const s of slotNames) slots[s] = learner.onlineWeights.map((v) => {
    const k = keyOf(byVariable, v, 'optimizer');
    return fromKey(`optimizer.${s}.${k.key}`, k);
  });
  return {
    step: info.step,
    optimizer: { kind, updates: info.optimizer.updates, slots },
    tensors: {
      onlineWeights: group(learner.onlineWeights, 'onlineWeights'),
      onlineState: group(learner.onlineState, 'onlineState'),
      targetWeights: group(learner.targetWeights, 'targetWeights'),
      targetState: group(learner.targetState, 'targetState'),
    },
  };
}
