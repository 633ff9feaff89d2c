import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { stockLayerClass } from './stock.js';

type ConvArgs = Parameters<typeof tfl.layers.conv2d>[0];
type ConvLayer = ReturnType<typeof tfl.layers.conv2d>;
interface ConvInternals {
  bias: unknown;
  activation: { getClassName(): string };
  dataFormat: string;
  strides: [number, number];
  padding: string;
  dilationRate: [number, number];
  kernel: { read(): tf.Tensor };
}

let leanClass: (new (args: ConvArgs) => ConvLayer) | undefined;

/**
 * tfjs-layers' Conv2D whose call, for a convolution without bias or activation (byol's encoders), is `tf.conv2d`
 * instead of tfjs's fused convolution: the same kernel and numbers, but a gradient taken per input. The fused
 * convolution's custom gradient computes the input's gradient even where nothing wants it — for the first layer,
 * the gradient with respect to the images, a full backward-data convolution every step (86 ms of a 7 s ResNet-50
 * step at batch 32). Same class name and config as the stock layer, so saved models load anywhere.
 */
export function leanConv2dClass(): new (args: ConvArgs) => ConvLayer {
  if (leanClass) return leanClass;
  const Base = stockLayerClass<new (args: ConvArgs) => ConvLayer>('Conv2D') as unknown as new (args: ConvArgs) => ConvLayer & { call(inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>): tf.Tensor | tf.Tensor[] };
  class LeanConv2D extends Base {
    override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>): tf.Tensor | tf.Tensor[] {
      const me = this as unknown as ConvInternals;
      const x = Array.isArray(inputs) ? inputs[0]! : inputs;
      const plain =
        me.bias == null && me.activation.getClassName() === 'linear' && me.dataFormat === 'channelsLast' && (x.rank === 4 || x.rank === 3) && me.dilationRate.every((d) => d === 1) && (me.padding === 'same' || me.padding === 'valid');
      if (!plain) return super.call(inputs, kwargs);
      return tf.tidy(() => tf.conv2d(x as tf.Tensor4D, me.kernel.read() as tf.Tensor4D, me.strides, me.padding as 'same' | 'valid', 'NHWC'));
    }
  }
  leanClass = LeanConv2D;
  return leanClass;
}

/** A Conv2D layer (see {@link leanConv2dClass}). */
export function conv2d(args: ConvArgs): ConvLayer {
  return new (leanConv2dClass())(args);
}
