import * as tfl from '@tensorflow/tfjs-layers';
import { invalidOption } from '../errors.js';
import { batchNorm, fuseBatchNormRelu } from './batchnorm.js';
import { residualAdd } from './residual.js';
import { conv2d } from './conv.js';
import { DEFAULT_BATCH_NORM, fanInTruncatedNormal, SeedStream, type BatchNormConfig } from './init.js';

export type ResNetDepth = 18 | 34 | 50 | 101 | 152 | 200;

export interface ResNetConfig {
  /** 18 and 34 use basic blocks, 50 and deeper bottleneck blocks (He et al. 2016, Table 1). */
  readonly depth: ResNetDepth;
  /**
   * `imagenet`: 7×7/2 convolution and 3×3/2 max-pool (He et al.; the paper's ResNet-50).
   * `cifar`: one 3×3/1 convolution and no max-pool, for 32-px images (as SimCLR's CIFAR variant, solo-learn
   * and lightly).
   */
  readonly stem: 'imagenet' | 'cifar';
  /** Channel multiplier of every layer (the paper's ResNet-50 (2×), (4×)…, §4 and Table 1). Default 1. */
  readonly width?: number;
  /** [height, width, channels] of the input images. */
  readonly inputShape: readonly [number, number, number];
  readonly batchNorm?: BatchNormConfig;
  /**
   * Start the last batch-norm scale of each bottleneck block at 0, as Haiku's ResNet used by the official
   * code does. Default: true (it only affects bottleneck blocks, as in Haiku).
   */
  readonly zeroInitLastBatchNorm?: boolean;
  /**
   * How convolutions and the stem's max-pool pad. `same` (default): TensorFlow's "SAME", as Haiku and the official
   * BYOL code — at stride 2 it pads 0 before and 1 after. `torch`: PyTorch's symmetric (k − 1) / 2 on every side, as
   * torchvision, solo-learn and lightly; weights trained in PyTorch give PyTorch's features only with this (a
   * Haiku→PyTorch port lost 4.6 points until the padding was reproduced, deepmind-research #84).
   */
  readonly padding?: 'same' | 'torch';
  /**
   * The CIFAR stem's own zero padding on every side, where it is not the rule's: solo-learn's CIFAR ResNets pad their
   * 3×3/1 stem by 2 (`Conv2d(3, 64, 3, stride=1, padding=2)`), so their feature maps are 34×34 on 32-px images.
   * Default: the padding rule's (1).
   */
  readonly stemPadding?: number;
  readonly seed?: number;
  readonly name?: string;
}

const BLOCKS: Record<ResNetDepth, readonly [number, number, number, number]> = {
  18: [2, 2, 2, 2],
  34: [3, 4, 6, 3],
  50: [3, 4, 6, 3],
  101: [3, 4, 23, 3],
  152: [3, 8, 36, 3],
  // The official code's ResNet-200 (its published 2× checkpoint).
  200: [3, 24, 36, 3],
};

/** Output feature size of a ResNet: 512·width (basic blocks) or 2048·width (bottleneck). */
export function resnetFeatureDim(depth: ResNetDepth, width = 1): number {
  return (depth < 50 ? 512 : 2048) * width;
}

/**
 * A ResNet v1 trunk ending in global average pooling: images [N, H, W, C] → features [N, 512·w or 2048·w].
 * Convolutions use 'same' padding (or PyTorch's, see `padding`) and no bias; the stride of a bottleneck block sits
 * on its 3×3 convolution (as Haiku and torchvision). A block gets a 1×1 projection shortcut where its shape changes
 * (He et al. option B, torchvision). Weights start as in Haiku (truncated normal, variance 1/fan_in). Layers carry
 * torchvision's names (`conv1`, `bn1`, `layer2.0.conv1`, `layer2.0.downsample.0`, …), so that weights move to and
 * from PyTorch by name.
 */
export function resnet(config: ResNetConfig): tfl.LayersModel {
  const width = config.width ?? 1;
  if (!(Number.isInteger(width) && width >= 1)) throw invalidOption('width', 'a positive integer', width);
  const blocks = BLOCKS[config.depth];
  if (!blocks) throw invalidOption('depth', 'one of 18, 34, 50, 101, 152, 200', config.depth);
  const bn = config.batchNorm ?? DEFAULT_BATCH_NORM;
  const seeds = new SeedStream(config.seed);
  const bottleneck = config.depth >= 50;
  const zeroLast = config.zeroInitLastBatchNorm ?? true;

  const padding = config.padding ?? 'same';
  if (padding !== 'same' && padding !== 'torch') throw invalidOption('padding', '"same" or "torch"', padding);
  // PyTorch pads (k − 1) / 2 on every side: explicit zero padding, then a 'valid' window.
  const pad = (x: tfl.SymbolicTensor, k: number, name: string) =>
    padding === 'torch' && k > 1 ? (tfl.layers.zeroPadding2d({ padding: (k - 1) / 2, name: `${name}.pad` }).apply(x) as tfl.SymbolicTensor) : x;
  const conv = (x: tfl.SymbolicTensor, filters: number, kernel: number, stride: number, name: string) =>
    conv2d({
      filters,
      kernelSize: kernel,
      strides: stride,
      padding: padding === 'torch' ? 'valid' : 'same',
      useBias: false,
      kernelInitializer: fanInTruncatedNormal(seeds),
      name,
    }).apply(pad(x, kernel, name)) as tfl.SymbolicTensor;
  const norm = (x: tfl.SymbolicTensor, name: string, zeroScale = false) =>
    batchNorm(bn, { gammaInitializer: zeroScale ? 'zeros' : 'ones', name }).apply(x) as tfl.SymbolicTensor;
  const relu = (x: tfl.SymbolicTensor) => tfl.layers.reLU().apply(x) as tfl.SymbolicTensor;

  const input = tfl.input({ shape: [...config.inputShape] });
  let x: tfl.SymbolicTensor;
  if (config.stem === 'imagenet') {
    x = relu(norm(conv(input, 64 * width, 7, 2, 'conv1'), 'bn1'));
    // After a ReLU every value is ≥ 0, so zero padding is max-pool's −∞ padding.
    x = tfl.layers.maxPooling2d({ poolSize: 3, strides: 2, padding: padding === 'torch' ? 'valid' : 'same', name: 'maxpool' }).apply(pad(x, 3, 'maxpool')) as tfl.SymbolicTensor;
  } else if (config.stemPadding !== undefined && config.stemPadding !== 1) {
    const p = config.stemPadding;
    if (!(Number.isInteger(p) && p >= 0 && p <= 3)) throw invalidOption('stemPadding', 'an integer from 0 to 3', p);
    const padded = p > 0 ? (tfl.layers.zeroPadding2d({ padding: p, name: 'conv1.pad' }).apply(input) as tfl.SymbolicTensor) : input;
    const stem = conv2d({ filters: 64 * width, kernelSize: 3, strides: 1, padding: 'valid', useBias: false, kernelInitializer: fanInTruncatedNormal(seeds), name: 'conv1' }).apply(padded) as tfl.SymbolicTensor;
    x = relu(norm(stem, 'bn1'));
  } else {
    x = relu(norm(conv(input, 64 * width, 3, 1, 'conv1'), 'bn1'));
  }
  let channels = 64 * width;
  blocks.forEach((count, group) => {
    const planes = 64 * 2 ** group * width;
    const out = bottleneck ? planes * 4 : planes;
    for (let b = 0; b < count; b++) {
      const stride = b === 0 && group > 0 ? 2 : 1;
      const at = `layer${group + 1}.${b}`;
      let shortcut = x;
      if (stride !== 1 || channels !== out) shortcut = norm(conv(x, out, 1, stride, `${at}.downsample.0`), `${at}.downsample.1`);
      let y: tfl.SymbolicTensor;
      if (bottleneck) {
        y = relu(norm(conv(x, planes, 1, 1, `${at}.conv1`), `${at}.bn1`));
        y = relu(norm(conv(y, planes, 3, stride, `${at}.conv2`), `${at}.bn2`));
        y = norm(conv(y, out, 1, 1, `${at}.conv3`), `${at}.bn3`, zeroLast);
      } else {
        y = relu(norm(conv(x, planes, 3, stride, `${at}.conv1`), `${at}.bn1`));
        y = norm(conv(y, planes, 3, 1, `${at}.conv2`), `${at}.bn2`);
      }
      x = relu(residualAdd().apply([y, shortcut]) as tfl.SymbolicTensor);
      channels = out;
    }
  });
  const features = tfl.layers.globalAveragePooling2d({}).apply(x) as tfl.SymbolicTensor;
  const model = tfl.model({ inputs: input, outputs: features, name: config.name ?? `resnet${config.depth}` });
  fuseBatchNormRelu(model);
  return model;
}
