import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { stockLayerClass } from './stock.js';
import { FUSED_ADD_RELU_KERNEL, RELU_GRAD_KERNEL } from '../kernels.js';

export { FUSED_ADD_RELU_KERNEL };

// The gradient of the fused sum + ReLU: ReLU's mask from the output (y > 0 exactly where a + b > 0), then the sum's
// gradient, the same tensor for both operands. One pass where the backend has RELU_GRAD_KERNEL.
tf.registerGradient({
  kernelName: FUSED_ADD_RELU_KERNEL,
  outputsToSave: [true],
  gradFunc: (dy, saved) => {
    const [y] = saved as tf.Tensor[];
    const g = (Array.isArray(dy) ? dy[0] : dy) as tf.Tensor;
    const dz = tf.getKernel(RELU_GRAD_KERNEL, tf.getBackend()) ? (tf.engine().runKernel(RELU_GRAD_KERNEL, { a: g, b: y! }) as tf.Tensor) : tf.mul(g, tf.step(y!));
    return { a: () => dz, b: () => tf.clone(dz) };
  },
});

type AddLayer = ReturnType<typeof tfl.layers.add>;
type AddArgs = NonNullable<Parameters<typeof tfl.layers.add>[0]>;

let fusedClass: (new (args?: AddArgs) => AddLayer) | undefined;

/**
 * tfjs-layers' Add that, when every reader of its output is a ReLU (marked by `fuseBatchNormRelu`), emits max(0, a + b)
 * in one kernel where the backend has {@link FUSED_ADD_RELU_KERNEL} (the native one does): a residual block's sum and
 * ReLU in one pass instead of two, and the ReLU layer after it passes the rectified output on without a pass, forward
 * and backward. Elsewhere, for more or fewer than two inputs, or inputs of different shapes, it is the stock layer. It
 * keeps the stock class name and config, so saved and exported models load as ordinary Add layers.
 */
export function fusedAddClass(): new (args?: AddArgs) => AddLayer {
  if (fusedClass) return fusedClass;
  const Base = stockLayerClass<new (args?: AddArgs) => AddLayer>('Add') as unknown as new (args?: AddArgs) => AddLayer & { call(inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>): tf.Tensor | tf.Tensor[] };
  class FusedAdd extends Base {
    /** Set by `fuseBatchNormRelu` when every consumer of this layer is a ReLU. Not part of the config. */
    reluFollows = false;

    override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>): tf.Tensor | tf.Tensor[] {
      const [a, b, ...rest] = Array.isArray(inputs) ? inputs : [inputs];
      const usable =
        this.reluFollows &&
        a !== undefined &&
        b !== undefined &&
        rest.length === 0 &&
        a.dtype === 'float32' &&
        b.dtype === 'float32' &&
        tf.util.arraysEqual(a.shape, b.shape) &&
        tf.getKernel(FUSED_ADD_RELU_KERNEL, tf.getBackend()) !== undefined;
      if (!usable) return super.call(inputs, kwargs);
      return tf.engine().runKernel(FUSED_ADD_RELU_KERNEL, { a, b }) as tf.Tensor;
    }
  }
  fusedClass = FusedAdd;
  return fusedClass;
}

/** A residual sum layer (sum and ReLU in one kernel where the backend has it and a ReLU alone reads it). */
export function residualAdd(args: AddArgs = {}): AddLayer {
  const Cls = fusedAddClass();
  return new Cls(args);
}
