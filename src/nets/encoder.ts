import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { ByolError, describe, invalidOption } from '../errors.js';
import { convNet } from './convnet.js';
import type { BatchNormConfig } from './init.js';
import { fusedBatchNormClass, fuseBatchNormRelu } from './batchnorm.js';
import { fusedAddClass } from './residual.js';
import { leanConv2dClass } from './conv.js';
import { layersNet, type Net } from './net.js';
import { resnet, type ResNetDepth } from './resnet.js';

/** The built-in encoders. `-cifar` ResNets use the 3×3 stem without max-pool, for 32-px images. */
export const BUILTIN_ENCODERS = [
  'resnet18',
  'resnet34',
  'resnet50',
  'resnet18-cifar',
  'resnet34-cifar',
  'resnet50-cifar',
  'convnet',
] as const;
export type BuiltinEncoderName = (typeof BUILTIN_ENCODERS)[number];

export interface BuiltinEncoderSpec {
  readonly name: BuiltinEncoderName;
  /** ResNet channel multiplier (integer ≥ 1). Default 1. */
  readonly width?: number;
  /** [height, width, channels]. Default: 224×224×3 for ImageNet-stem ResNets, 32×32×3 for `-cifar`, 28×28×1 for `convnet`. */
  readonly inputShape?: readonly [number, number, number];
}

/**
 * An encoder written as a plain function over its own variables. The learner builds two (online and
 * target) by calling the factory twice.
 */
export interface EncoderFunction {
  /** images [N, H, W, C] → features [N, featureDim]. */
  apply(images: tf.Tensor4D, training: boolean): tf.Tensor2D;
  /** The weights the optimizer trains and the EMA copies. */
  readonly variables: readonly tf.Variable[];
  /** Non-trained state updated by forward passes (e.g. batch-norm running statistics). Default none. */
  readonly stateVariables?: readonly tf.Variable[];
  readonly featureDim: number;
  /** [height, width, channels] the encoder expects, if fixed; checked against each batch. */
  readonly inputShape?: readonly [number, number, number];
  dispose?(): void;
}

/**
 * The encoder option: a built-in name or spec; a tf.LayersModel (the target is a fresh copy of its
 * architecture, built from its config — custom layers must be registered with tfjs serialization); or a
 * factory returning a LayersModel or an {@link EncoderFunction}, called once per network.
 */
export type EncoderOption =
  | BuiltinEncoderName
  | BuiltinEncoderSpec
  | tfl.LayersModel
  | (() => tfl.LayersModel | EncoderFunction);

export interface Encoder extends Net {
  readonly featureDim: number;
  /** [height, width, channels], or null where a dimension is free. */
  readonly inputShape: readonly (number | null)[];
  /** What the user gets back as `learner.encoder`. */
  readonly model: tfl.LayersModel | EncoderFunction;
}

export interface EncoderBuildContext {
  readonly batchNorm: BatchNormConfig;
  readonly seed: number | undefined;
}

function isLayersModel(x: unknown): x is tfl.LayersModel {
  return x instanceof tfl.LayersModel;
}

function isBuiltinName(x: unknown): x is BuiltinEncoderName {
  return typeof x === 'string' && (BUILTIN_ENCODERS as readonly string[]).includes(x);
}

const BUILTIN_LIST = BUILTIN_ENCODERS.map((n) => `"${n}"`).join(', ');

/** Checks the encoder option's form without building anything. */
export function validateEncoderOption(option: unknown): void {
  if (isBuiltinName(option) || isLayersModel(option) || typeof option === 'function') return;
  if (option !== null && typeof option === 'object' && 'name' in option) {
    const spec = option as BuiltinEncoderSpec;
    if (!isBuiltinName(spec.name)) throw invalidOption('encoder.name', `one of ${BUILTIN_LIST}`, spec.name);
    if (spec.width !== undefined && !(Number.isInteger(spec.width) && spec.width >= 1)) {
      throw invalidOption('encoder.width', 'a positive integer', spec.width);
    }
    if (spec.width !== undefined && spec.name === 'convnet') throw invalidOption('encoder.width', 'unset for "convnet" (ResNets only)', spec.width);
    if (spec.inputShape !== undefined) {
      const s = spec.inputShape as unknown;
      if (!Array.isArray(s) || s.length !== 3 || !s.every((d) => Number.isInteger(d) && d >= 1)) {
        throw invalidOption('encoder.inputShape', '[height, width, channels] of positive integers', s);
      }
    }
    return;
  }
  throw invalidOption('encoder', `one of ${BUILTIN_LIST}, {name, width?, inputShape?}, a tf.LayersModel or a factory function`, option);
}

function buildBuiltin(spec: BuiltinEncoderSpec, ctx: EncoderBuildContext): tfl.LayersModel {
  if (spec.name === 'convnet') {
    return convNet({ inputShape: spec.inputShape ?? [28, 28, 1], batchNorm: ctx.batchNorm, ...seedOf(ctx) });
  }
  const cifar = spec.name.endsWith('-cifar');
  const depth = Number(spec.name.slice('resnet'.length).replace('-cifar', '')) as ResNetDepth;
  return resnet({
    depth,
    stem: cifar ? 'cifar' : 'imagenet',
    width: spec.width ?? 1,
    inputShape: spec.inputShape ?? (cifar ? [32, 32, 3] : [224, 224, 3]),
    batchNorm: ctx.batchNorm,
    ...seedOf(ctx),
  });
}

function seedOf(ctx: EncoderBuildContext): { seed?: number } {
  return ctx.seed === undefined ? {} : { seed: ctx.seed };
}

/**
 * Runs `build` (a synchronous deserialization, e.g. LayersModel.fromConfig) with BatchNormalization, Conv2D and Add
 * configs turned into byol's layers (the fused batch norm, the lean convolution, the residual sum), then restores
 * tfjs-layers' registry and marks the batch norms and sums a ReLU alone reads. (Sequential.fromConfig ignores custom
 * objects, so the registry entries themselves are swapped for the duration.)
 */
function withByolLayers<T>(build: () => T): T {
  const map = tf.serialization.SerializationMap.getMap().classNameMap;
  const swaps = [
    ['BatchNormalization', fusedBatchNormClass()],
    ['Conv2D', leanConv2dClass()],
    ['Add', fusedAddClass()],
  ] as const;
  const stock = swaps.map(([name]) => map[name]);
  for (const [name, Cls] of swaps) {
    const c = Cls as unknown as { fromConfig: unknown };
    map[name] = [c, c.fromConfig] as unknown as (typeof map)[string];
  }
  try {
    const built = build();
    if (built instanceof tfl.LayersModel) fuseBatchNormRelu(built);
    return built;
  } finally {
    swaps.forEach(([name], i) => {
      if (stock[i]) map[name] = stock[i]!;
    });
  }
}

/** A fresh LayersModel of the same architecture (new weights), from the model's config. */
export function cloneArchitecture(model: tfl.LayersModel): tfl.LayersModel {
  const ctor = model.constructor as unknown as {
    fromConfig(cls: unknown, config: unknown): tfl.LayersModel;
  };
  try {
    // Batch-norm and convolution layers come back as byol's (same configs; fused batch norm + ReLU, lean convolutions).
    return withByolLayers(() => ctor.fromConfig(ctor, model.getConfig()));
  } catch (e) {
    throw new ByolError(
      'INVALID_ENCODER',
      `option \`encoder\`: could not build a target copy of the given model from its config (${(e as Error).message}); pass a factory function instead`,
      'encoder',
    );
  }
}

function fromLayersModel(model: tfl.LayersModel): Encoder {
  if (model.inputs.length !== 1 || model.outputs.length !== 1) {
    throw new ByolError('INVALID_ENCODER', `option \`encoder\` must have one input and one output; got ${model.inputs.length} and ${model.outputs.length}`, 'encoder');
  }
  const inShape = model.inputs[0]!.shape;
  const outShape = model.outputs[0]!.shape;
  if (inShape.length !== 4) {
    throw new ByolError('INVALID_ENCODER', `option \`encoder\` must take image batches [batch, height, width, channels]; its input shape is [${inShape.map(String)}]`, 'encoder');
  }
  const featureDim = outShape[1];
  if (outShape.length !== 2 || typeof featureDim !== 'number') {
    throw new ByolError(
      'INVALID_ENCODER',
      `option \`encoder\` must output one feature vector per image, shape [batch, features]; its output shape is [${outShape.map(String)}] (add a pooling or flatten layer)`,
      'encoder',
    );
  }
  const net = layersNet(model);
  if (net.trainable.length === 0) throw new ByolError('INVALID_ENCODER', 'option `encoder` has no trainable weights', 'encoder');
  return { ...net, featureDim, inputShape: inShape.slice(1), model };
}

function fromFunction(fn: EncoderFunction): Encoder {
  if (!(Number.isInteger(fn.featureDim) && fn.featureDim >= 1)) {
    throw new ByolError('INVALID_ENCODER', `option \`encoder\`: the function encoder's featureDim must be a positive integer; got ${describe(fn.featureDim)}`, 'encoder');
  }
  if (typeof fn.apply !== 'function' || !Array.isArray(fn.variables) || fn.variables.length === 0) {
    throw new ByolError('INVALID_ENCODER', 'option `encoder`: a function encoder needs apply(images, training) and a non-empty `variables` list', 'encoder');
  }
  return {
    apply: (x, training) => fn.apply(x as tf.Tensor4D, training),
    trainable: fn.variables,
    state: fn.stateVariables ?? [],
    dispose: () => (fn.dispose ? fn.dispose() : fn.variables.forEach((v) => v.dispose())),
    featureDim: fn.featureDim,
    inputShape: fn.inputShape ?? [null, null, null],
    model: fn,
  };
}

/**
 * Builds the online and target encoders from the option. The target has the same architecture and its
 * own weights (the learner then copies the online weights into it unless told otherwise).
 */
export function buildEncoderPair(option: EncoderOption, ctx: EncoderBuildContext): { online: Encoder; target: Encoder } {
  validateEncoderOption(option);
  if (isLayersModel(option)) {
    const online = fromLayersModel(option);
    return { online, target: fromLayersModel(cloneArchitecture(option)) };
  }
  if (typeof option === 'function') {
    const make = (): Encoder => {
      const made = option();
      if (isLayersModel(made)) return fromLayersModel(made);
      if (made !== null && typeof made === 'object') return fromFunction(made);
      throw new ByolError('INVALID_ENCODER', `option \`encoder\`: the factory must return a tf.LayersModel or an encoder function object; got ${describe(made)}`, 'encoder');
    };
    const online = make();
    const target = make();
    if (online.model === target.model) {
      throw new ByolError('INVALID_ENCODER', 'option `encoder`: the factory returned the same model twice; it must build a new one per call', 'encoder');
    }
    return { online, target };
  }
  const spec: BuiltinEncoderSpec = typeof option === 'string' ? { name: option } : option;
  const online = fromLayersModel(buildBuiltin(spec, ctx));
  // The target's seed differs so that `targetInit: 'independent'` really is independent.
  const targetCtx = { ...ctx, seed: ctx.seed === undefined ? undefined : ctx.seed + 7919 };
  return { online, target: fromLayersModel(buildBuiltin(spec, targetCtx)) };
}
