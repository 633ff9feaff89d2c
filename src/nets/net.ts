import type * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';

/**
 * What the learner needs of a network: a forward pass in training or inference mode, and its weights
 * split into those the optimizer and the EMA update (`trainable`) and the running statistics of its
 * batch norms (`state`), which each network updates from its own forward passes.
 */
export interface Net {
  apply(x: tf.Tensor, training: boolean): tf.Tensor;
  readonly trainable: readonly tf.Variable[];
  readonly state: readonly tf.Variable[];
  dispose(): void;
  /** The LayersModel behind it, where there is one (to export its weights). */
  readonly layersModel?: tfl.LayersModel;
}

/** A tfjs LayersModel seen as a {@link Net}. */
export function layersNet(model: tfl.LayersModel): Net {
  // LayerVariable.read() hands out the backing tf.Variable itself, which variableGrads and assign need.
  const vars = (ws: readonly tfl.LayerVariable[]) => ws.map((w) => w.read() as tf.Variable);
  return {
    apply: (x, training) => model.apply(x, { training }) as tf.Tensor,
    trainable: vars(model.trainableWeights),
    state: vars(model.nonTrainableWeights),
    dispose: () => model.dispose(),
    layersModel: model,
  };
}
