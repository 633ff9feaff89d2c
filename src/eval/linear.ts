import { classCount } from './labels.js';
import * as tf from '@tensorflow/tfjs-core';
import { invalidOption } from '../errors.js';
import { Rng } from '../views/rng.js';

export interface LinearProbeOptions {
  /** Passes over the training features. Default 100. */
  readonly epochs?: number;
  /** Default 256. */
  readonly batchSize?: number;
  /** Adam learning rate. Default 1e-2. */
  readonly learningRate?: number;
  /** L2 penalty on the weights (not the bias). Default 1e-4. */
  readonly weightDecay?: number;
  /** Seed of the initial weights' order of examples. Default 0. */
  readonly seed?: number;
}

export interface LinearProbeResult {
  readonly top1: number;
  readonly top5: number;
  /** Mean training cross-entropy of the last epoch. */
  readonly trainLoss: number;
}

/**
 * Linear evaluation of frozen features (the paper's §4.1 protocol, simplified): features standardized with the
 * training set's mean and std, then multinomial logistic regression trained with Adam and an L2 penalty; returns
 * top-1 and top-5 accuracy on the test features, in [0, 1].
 */
export async function linearProbe(
  trainFeatures: tf.Tensor2D,
  trainLabels: Int32Array,
  testFeatures: tf.Tensor2D,
  testLabels: Int32Array,
  options: LinearProbeOptions = {},
): Promise<LinearProbeResult> {
  const epochs = options.epochs ?? 100;
  const batchSize = options.batchSize ?? 256;
  const lr = options.learningRate ?? 1e-2;
  const wd = options.weightDecay ?? 1e-4;
  if (!(Number.isInteger(epochs) && epochs >= 1)) throw invalidOption('epochs', 'a positive integer', epochs);
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) throw invalidOption('batchSize', 'a positive integer', batchSize);
  if (!(lr > 0)) throw invalidOption('learningRate', 'a number > 0', lr);
  if (!(wd >= 0)) throw invalidOption('weightDecay', 'a number ≥ 0', wd);
  const n = trainFeatures.shape[0];
  const d = trainFeatures.shape[1];
  if (trainLabels.length !== n) throw invalidOption('trainLabels', `${n} labels`, trainLabels.length);
  if (testLabels.length !== testFeatures.shape[0]) throw invalidOption('testLabels', `${testFeatures.shape[0]} labels`, testLabels.length);
  const classes = classCount(trainLabels, testLabels);

  const { mean, variance } = tf.moments(trainFeatures, 0);
  const std = tf.tidy(() => tf.add(tf.sqrt(variance), 1e-6));
  const standardize = (x: tf.Tensor2D) => tf.tidy(() => tf.div(tf.sub(x, mean), std) as tf.Tensor2D);
  const xTrain = standardize(trainFeatures);
  const xTest = standardize(testFeatures);
  const yTrain = tf.tidy(() => tf.oneHot(tf.tensor1d(trainLabels, 'int32'), classes));
  // Made inside tidy, so that the zero tensors they start from are freed.
  const w = tf.tidy(() => tf.variable(tf.zeros([d, classes])));
  const b = tf.tidy(() => tf.variable(tf.zeros([classes])));
  const optimizer = tf.train.adam(lr);
  const rng = new Rng(options.seed ?? 0);
  let trainLoss = 0;
  try {
    for (let e = 0; e < epochs; e++) {
      const order = rng.permutation(n);
      let sum = 0;
      for (let s = 0; s < n; s += batchSize) {
        const idx = tf.tensor1d(order.slice(s, s + batchSize), 'int32');
        const loss = optimizer.minimize(() => {
          const xb = tf.gather(xTrain, idx);
          const yb = tf.gather(yTrain, idx);
          const logits = tf.add(tf.matMul(xb, w), b);
          const ce = tf.losses.softmaxCrossEntropy(yb, logits);
          return tf.add(ce, tf.mul(tf.sum(tf.square(w)), wd / 2)) as tf.Scalar;
        }, true, [w, b]);
        sum += (await loss!.data())[0]! * Math.min(batchSize, n - s);
        tf.dispose([loss!, idx]);
      }
      trainLoss = sum / n;
    }
    const [top1, top5] = tf.tidy(() => {
      const logits = tf.add(tf.matMul(xTest, w), b);
      const labels = tf.tensor1d(testLabels, 'int32');
      const k = Math.min(5, classes);
      const { indices } = tf.topk(logits, k);
      const hits = tf.equal(indices, tf.expandDims(labels, 1));
      const first = tf.mean(tf.cast(tf.slice(hits, [0, 0], [-1, 1]), 'float32'));
      const any = tf.mean(tf.cast(tf.any(hits, 1), 'float32'));
      return [first.dataSync()[0]!, any.dataSync()[0]!];
    });
    return { top1: top1!, top5: top5!, trainLoss };
  } finally {
    tf.dispose([mean, variance, std, xTrain, xTest, yTrain, w, b]);
    optimizer.dispose();
  }
}
