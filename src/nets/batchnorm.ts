import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { BatchNormConfig } from './init.js';
import { stockLayerClass } from './stock.js';
import { fusedAddClass } from './residual.js';
import { FUSED_BN_GRAD_KERNEL, FUSED_BN_RELU_TRAIN_KERNEL, FUSED_BN_TRAIN_KERNEL } from '../kernels.js';

export { FUSED_BN_GRAD_KERNEL, FUSED_BN_RELU_TRAIN_KERNEL, FUSED_BN_TRAIN_KERNEL };

// The gradients of both training passes, through FUSED_BN_GRAD_KERNEL. Only y reaches a loss: the statistics feed the
// moving averages, which are outside the gradient. With ReLU, the rectified y is saved too and carries ReLU's mask
// into the same kernel.
for (const relu of [false, true]) {
  tf.registerGradient({
    kernelName: relu ? FUSED_BN_RELU_TRAIN_KERNEL : FUSED_BN_TRAIN_KERNEL,
    inputsToSave: ['x', 'scale'],
    outputsToSave: [relu, true, true],
    gradFunc: (dy, saved, attrs) => {
      const [x, scale, ...outputs] = saved as tf.Tensor[];
      const [y, mean, variance] = relu ? outputs : [undefined, ...outputs];
      const dyY = (Array.isArray(dy) ? dy[0] : dy) as tf.Tensor;
      const inputs = { x: x!, dy: dyY, mean: mean!, variance: variance!, scale: scale!, ...(y ? { y } : {}) };
      const [dx, dScale, dOffset] = tf.engine().runKernel(FUSED_BN_GRAD_KERNEL, inputs, attrs) as tf.Tensor[];
      return { x: () => dx!, scale: () => dScale!, offset: () => dOffset! };
    },
  });
}

type BatchNormArgs = NonNullable<Parameters<typeof tfl.layers.batchNormalization>[0]>;
type BatchNormLayer = ReturnType<typeof tfl.layers.batchNormalization>;
interface BatchNormInternals {
  axis: number;
  epsilon: number;
  momentum: number;
  center: boolean;
  scale: boolean;
  gamma: { read(): tf.Variable } | null;
  beta: { read(): tf.Variable } | null;
  movingMean: { read(): tf.Tensor; write(t: tf.Tensor): void };
  movingVariance: { read(): tf.Tensor; write(t: tf.Tensor): void };
}

let fusedClass: (new (args: BatchNormArgs) => BatchNormLayer) | undefined;

/**
 * tfjs-layers' BatchNormalization whose training pass runs as one fused kernel (and one for its gradient) where the
 * backend has them (the native backend does); elsewhere, and at inference, it is the stock layer. It keeps the stock
 * class name and config, so saved and exported models load as ordinary BatchNormalization layers. Same arithmetic:
 * batch mean and biased variance (tf.moments), moving averages updated as the stock layer does.
 */
export function fusedBatchNormClass(): new (args: BatchNormArgs) => BatchNormLayer {
  if (fusedClass) return fusedClass;
  const Base = stockLayerClass<new (args: BatchNormArgs) => BatchNormLayer>('BatchNormalization') as unknown as new (args: BatchNormArgs) => BatchNormLayer & { call(inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>): tf.Tensor | tf.Tensor[] };
  class FusedBatchNormalization extends Base {
    /**
     * Set by {@link fuseBatchNormRelu} when every consumer of this layer is a ReLU: the training pass then emits
     * max(0, y) (ReLU of it is y again), saving ReLU's own pass forward and backward. Not part of the config.
     */
    reluFollows = false;

    override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>): tf.Tensor | tf.Tensor[] {
      const me = this as unknown as BatchNormInternals;
      const x = Array.isArray(inputs) ? inputs[0]! : inputs;
      const lastAxis = me.axis === -1 || me.axis === x.rank - 1;
      const usable =
        kwargs['training'] === true && lastAxis && me.gamma && me.beta && x.dtype === 'float32' && x.size > 0 && tf.getKernel(FUSED_BN_TRAIN_KERNEL, tf.getBackend()) !== undefined;
      if (!usable) return super.call(inputs, kwargs);
      const kernel = this.reluFollows && tf.getKernel(FUSED_BN_RELU_TRAIN_KERNEL, tf.getBackend()) !== undefined ? FUSED_BN_RELU_TRAIN_KERNEL : FUSED_BN_TRAIN_KERNEL;
      return tf.tidy(() => {
        const [y, mean, variance] = tf.engine().runKernel(kernel, { x, scale: me.gamma!.read(), offset: me.beta!.read() }, { varianceEpsilon: me.epsilon }) as tf.Tensor[];
        // The stock layer's update: v ← v − (v − batch)·(1 − momentum).
        const decay = 1 - me.momentum;
        for (const [variable, value] of [[me.movingMean, mean!], [me.movingVariance, variance!]] as const) {
          tf.tidy(() => {
            const orig = variable.read();
            variable.write(tf.sub(orig, tf.mul(tf.sub(orig, value), decay)));
          });
        }
        return y!;
      });
    }
  }
  fusedClass = FusedBatchNormalization;
  return fusedClass;
}

/** Whether `layer` is ReLU and nothing else: tfjs-layers' ReLU (any ceiling: it rectifies first) or Activation('relu'). */
function isRelu(layer: tfl.layers.Layer): boolean {
  const name = layer.getClassName();
  if (name === 'ReLU') return true;
  return name === 'Activation' && (layer.getConfig() as { activation?: unknown }).activation === 'relu';
}

/**
 * Marks each of the model's fused batch-norm layers, and each of its residual sums (nets/residual.ts), whose every
 * consumer is a ReLU layer (see `reluFollows`), in nested models too; returns how many it marked. The builders call it;
 * call it on a model built by hand. The model's outputs are unchanged (ReLU of a rectified value is itself); only a
 * marked layer's own output (a batch norm's in training mode) is then already rectified.
 */
export function fuseBatchNormRelu(model: tfl.LayersModel): number {
  const Bn = fusedBatchNormClass();
  const Sum = fusedAddClass();
  let marked = 0;
  for (const layer of model.layers) {
    if (layer instanceof tfl.LayersModel) {
      marked += fuseBatchNormRelu(layer);
      continue;
    }
    if (!(layer instanceof Bn) && !(layer instanceof Sum)) continue;
    // Consumers: the layers of this layer's outbound nodes (a node per call); none, any non-ReLU, or the layer being
    // an output of the model itself → no fusion.
    const consumers = (layer as unknown as { outboundNodes: { outboundLayer: tfl.layers.Layer }[] }).outboundNodes.map((n) => n.outboundLayer);
    const fuse = consumers.length > 0 && consumers.every(isRelu) && !model.outputLayers.includes(layer);
    (layer as unknown as { reluFollows: boolean }).reluFollows = fuse;
    if (fuse) marked++;
  }
  return marked;
}

/** A batch-norm layer with the given settings (fused training pass where the backend has it). */
export function batchNorm(config: BatchNormConfig, extra: Omit<BatchNormArgs, 'momentum' | 'epsilon'> = {}): BatchNormLayer {
  const Cls = fusedBatchNormClass();
  return new Cls({ ...extra, momentum: config.momentum, epsilon: config.epsilon });
}
