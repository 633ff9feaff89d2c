import * as tfl from '@tensorflow/tfjs-layers';
import { batchNorm, fuseBatchNormRelu } from './batchnorm.js';
import { conv2d } from './conv.js';
import { DEFAULT_BATCH_NORM, fanInTruncatedNormal, SeedStream, type BatchNormConfig } from './init.js';

export interface ConvNetConfig {
  /** [height, width, channels]; default [28, 28, 1] (MNIST, Fashion-MNIST). */
  readonly inputShape?: readonly [number, number, number];
  /** Channels of the three conv stages; default [32, 64, 128]. The feature size is the last one. */
  readonly channels?: readonly [number, number, number];
  readonly batchNorm?: BatchNormConfig;
  readonly seed?: number;
  readonly name?: string;
}

/**
 * A small encoder for 28×28 grey images (ours; the paper has none this small): three stages of
 * 3×3 conv → BatchNorm → ReLU, the first two followed by 2×2 max-pooling, then global average pooling.
 * 28×28×1 → 128 features, about 93 k weights.
 */
export function convNet(config: ConvNetConfig = {}): tfl.LayersModel {
  const [c1, c2, c3] = config.channels ?? [32, 64, 128];
  const bn = config.batchNorm ?? DEFAULT_BATCH_NORM;
  const seeds = new SeedStream(config.seed);
  const stage = (filters: number, pool: boolean, first?: readonly [number, number, number]): tfl.layers.Layer[] => [
    conv2d({
      ...(first ? { inputShape: [...first] } : {}),
      filters,
      kernelSize: 3,
      padding: 'same',
      useBias: false,
      kernelInitializer: fanInTruncatedNormal(seeds),
    }),
    batchNorm(bn),
    tfl.layers.reLU(),
    ...(pool ? [tfl.layers.maxPooling2d({ poolSize: 2, strides: 2 })] : []),
  ];
  const model = tfl.sequential({
    name: config.name ?? 'convnet',
    layers: [
      ...stage(c1, true, config.inputShape ?? [28, 28, 1]),
      ...stage(c2, true),
      ...stage(c3, false),
      tfl.layers.globalAveragePooling2d({}),
    ],
  });
  fuseBatchNormRelu(model);
  return model;
}
