import * as tfl from '@tensorflow/tfjs-layers';
import { batchNorm, fuseBatchNormRelu } from './batchnorm.js';
import { DEFAULT_BATCH_NORM, fanInTruncatedNormal, SeedStream, type BatchNormConfig } from './init.js';

export interface MlpHeadConfig {
  readonly inputDim: number;
  /** Paper §3.3: 4096. */
  readonly hiddenDim: number;
  /** Paper §3.3: 256. */
  readonly outputDim: number;
  readonly batchNorm?: BatchNormConfig;
  readonly seed?: number;
  readonly name?: string;
}

/**
 * BYOL's projector and predictor (paper §3.3; official `MLP`): Linear(d→hidden, bias) → BatchNorm → ReLU →
 * Linear(hidden→out, no bias).
 */
export function mlpHead(config: MlpHeadConfig): tfl.LayersModel {
  const bn = config.batchNorm ?? DEFAULT_BATCH_NORM;
  const seeds = new SeedStream(config.seed);
  const model = tfl.sequential({
    ...(config.name === undefined ? {} : { name: config.name }),
    layers: [
      tfl.layers.dense({
        inputShape: [config.inputDim],
        units: config.hiddenDim,
        useBias: true,
        kernelInitializer: fanInTruncatedNormal(seeds),
      }),
      batchNorm(bn),
      tfl.layers.reLU(),
      tfl.layers.dense({ units: config.outputDim, useBias: false, kernelInitializer: fanInTruncatedNormal(seeds) }),
    ],
  });
  fuseBatchNormRelu(model);
  return model;
}
