import * as tf from '@tensorflow/tfjs-core';

/**
 * The class tfjs-layers registered under `className` (its layer modules are not exported), for byol's layers to
 * subclass while keeping the stock class name and config.
 */
export function stockLayerClass<C>(className: string): C {
  const entry = tf.serialization.SerializationMap.getMap().classNameMap[className];
  if (!entry) throw new Error(`tfjs-layers did not register ${className}`);
  return entry[0] as unknown as C;
}
