import { classCount } from './labels.js';
import * as tf from '@tensorflow/tfjs-core';
import { invalidOption } from '../errors.js';
import { l2Normalize } from '../byol/loss.js';

export interface KnnOptions {
  /** Neighbours that vote. Default 200 (Wu et al. 2018, InstDisc; solo-learn). */
  readonly k?: number;
  /** Votes weigh exp(cos/temperature). Default 0.1 (InstDisc; solo-learn). */
  readonly temperature?: number;
  /** Test rows per similarity block (memory bound). Default 256. */
  readonly chunk?: number;
}

/**
 * Weighted k-nearest-neighbour accuracy on l2-normalized features (Wu et al. 2018): each test feature's k most
 * cosine-similar training features vote for their class with weight exp(sim / T). Returns top-1 accuracy in [0, 1].
 */
export async function knnAccuracy(
  trainFeatures: tf.Tensor2D,
  trainLabels: Int32Array,
  testFeatures: tf.Tensor2D,
  testLabels: Int32Array,
  options: KnnOptions = {},
): Promise<number> {
  const k = Math.min(options.k ?? 200, trainFeatures.shape[0]);
  const temperature = options.temperature ?? 0.1;
  const chunk = options.chunk ?? 256;
  if (!(k >= 1)) throw invalidOption('k', 'a positive integer', options.k);
  if (!(temperature > 0)) throw invalidOption('temperature', 'a number > 0', temperature);
  if (trainLabels.length !== trainFeatures.shape[0]) throw invalidOption('trainLabels', `${trainFeatures.shape[0]} labels`, trainLabels.length);
  if (testLabels.length !== testFeatures.shape[0]) throw invalidOption('testLabels', `${testFeatures.shape[0]} labels`, testLabels.length);
  const classes = classCount(trainLabels, testLabels);
  const train = l2Normalize(trainFeatures);
  const trainOneHot = tf.tidy(() => tf.oneHot(tf.tensor1d(trainLabels, 'int32'), classes));
  let correct = 0;
  try {
    for (let start = 0; start < testLabels.length; start += chunk) {
      const size = Math.min(chunk, testLabels.length - start);
      const predicted = tf.tidy(() => {
        const q = l2Normalize(tf.slice(testFeatures, [start, 0], [size, -1]));
        const { values, indices } = tf.topk(tf.matMul(q, train, false, true), k);
        const weights = tf.exp(tf.div(values, temperature)); // [size, k]
        const votes = tf.gather(trainOneHot, indices); // [size, k, classes]
        return tf.argMax(tf.sum(tf.mul(votes, tf.expandDims(weights, 2)), 1), 1);
      });
      const p = await predicted.data();
      predicted.dispose();
      for (let i = 0; i < size; i++) if (p[i] === testLabels[start + i]) correct++;
    }
  } finally {
    tf.dispose([train, trainOneHot]);
  }
  return correct / testLabels.length;
}
