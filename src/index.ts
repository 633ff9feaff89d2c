/**
 * byol — Bootstrap Your Own Latent (Grill et al. 2020) on TensorFlow.js. This entry is browser-safe:
 * Node-only helpers live in `byol/node`.
 */
import './backend.js';

export { Byol, type StepResult, type LearnerState } from './byol/learner.js';
export {
  resolveByolOptions,
  DEFAULT_BASE_LEARNING_RATE,
  type ByolOptions,
  type ResolvedByolOptions,
  type OptimizerName,
  type LearnerMode,
} from './byol/options.js';
export { l2Normalize, regressionLoss, symmetricLoss, negativesTerm, collapseStd } from './byol/loss.js';
export { targetTau, type TauSchedule } from './byol/tau.js';
export { emaUpdate, copyVariables, stopGradient } from './byol/ema.js';
export { learningRateAt, type LearningRateSchedule } from './train/schedule.js';
export { leanVariableGrads } from './train/gradients.js';
export {
  Optimizer,
  Lars,
  Sgd,
  AdamW,
  isBiasOrNorm,
  type OptimizerState,
  type LarsOptions,
  type SgdOptions,
  type AdamWOptions,
} from './train/optimizer.js';
export { resnet, resnetFeatureDim, type ResNetConfig, type ResNetDepth } from './nets/resnet.js';
export { convNet, type ConvNetConfig } from './nets/convnet.js';
export { mlpHead, type MlpHeadConfig } from './nets/mlp.js';
export {
  BUILTIN_ENCODERS,
  cloneArchitecture,
  type BuiltinEncoderName,
  type BuiltinEncoderSpec,
  type EncoderFunction,
  type EncoderOption,
} from './nets/encoder.js';
export { DEFAULT_BATCH_NORM, type BatchNormConfig } from './nets/init.js';
export { batchNorm, fusedBatchNormClass, fuseBatchNormRelu, FUSED_BN_TRAIN_KERNEL, FUSED_BN_RELU_TRAIN_KERNEL, FUSED_BN_GRAD_KERNEL } from './nets/batchnorm.js';
export { residualAdd, fusedAddClass, FUSED_ADD_RELU_KERNEL } from './nets/residual.js';
export { ByolError, type ByolErrorCode } from './errors.js';
export { silenceCpuBanner, installWasmFastPaths } from './backend.js';
export { installWasmConvBackpropFilter, installWasmConvBackpropInput, installWasmFastTile } from './wasm-kernels.js';
export { ViewSampler, applyView, toUnitRange, type ViewSamplerOptions } from './views/views.js';
export {
  VIEW_PRESETS,
  VIEW_ABLATIONS,
  ablate,
  resolveViewsConfig,
  inputDescription,
  validateViewsConfig,
  type ViewsConfig,
  type ViewConfig,
  type ColorJitterConfig,
  type Interpolation,
  type ViewPresetName,
  type ViewAblation,
  type ViewsOverrides,
  type ViewOverrides,
} from './views/options.js';
export { sampleCrop, sampleViewParams, JITTER_OPS, type CropBox, type ImageParams } from './views/sample.js';
export {
  resizedCrops,
  resampleTaps,
  adjustBrightness,
  adjustContrast,
  adjustSaturationHue,
  rgbToHsv,
  hsvToRgb,
  grayscale,
  gaussianBlur,
  gaussianKernel,
  blurRadius,
  solarize,
  normalize,
  LUMA,
} from './views/ops.js';
export { Rng } from './views/rng.js';
export { knnAccuracy, type KnnOptions } from './eval/knn.js';
export { linearProbe, type LinearProbeOptions, type LinearProbeResult } from './eval/linear.js';
export { pca, cosineNeighbours, type PcaResult } from './eval/map.js';
export { effectiveRank, normalizedStd, singularValues } from './eval/rank.js';
export {
  FUSED_KERNELS,
  FUSED_LARS_KERNEL,
  FUSED_EMA_KERNEL,
  FUSED_EMA_ALL_KERNEL,
  larsUpdateReference,
  emaReference,
  batchNormTrainReference,
  batchNormReluTrainReference,
  batchNormGradReference,
  RELU_GRAD_KERNEL,
  addReluReference,
  reluGradReference,
  type FusedKernelName,
  type LarsAttrs,
} from './kernels.js';
export { VectorIndex, checkId, type Item, type Hit } from './serve/vector-index.js';
