/**
 * A BYOL run over a page's dataset: the learner, its views, a data order that is a pure function of (seed, step), and a
 * snapshot that restores the run exactly. No DOM here: the same class runs under Node in the tests.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import {
  Byol,
  ByolError,
  ViewSampler,
  convNet,
  knnAccuracy,
  normalize,
  resnet,
  Rng,
  toUnitRange,
  type LearnerState,
  type ViewsConfig,
} from '../../src/index.js';
import type { PageDataset } from './data.js';

export type PageEncoder = 'convnet' | 'resnet18-cifar';

export interface PageRunConfig {
  readonly encoder: PageEncoder;
  /** Images per step. */
  readonly batch: number;
  /** Steps of the whole run (the τ and learning-rate cosines' horizon). */
  readonly steps: number;
  /** Seeds the weights, the views and the data order. */
  readonly seed: number;
  /** Projector and predictor hidden width (the paper's 4096 is heavy for a page; output stays 256). */
  readonly hidden: number;
  /** LARS base learning rate per 256 images. Default the paper's 0.2 (App. B). */
  readonly lr: number;
}

export const DEFAULT_PAGE_RUN: PageRunConfig = { encoder: 'convnet', batch: 64, steps: 500, seed: 1, hidden: 512, lr: 0.2 };

export interface StepMetrics {
  readonly step: number;
  readonly loss: number;
  readonly tau: number;
  readonly learningRate: number;
  readonly collapse: number;
  readonly imagesPerSecond: number;
}

/** What IndexedDB keeps: enough to rebuild the run and continue it exactly. */
export interface PageRunSnapshot {
  readonly version: 1;
  readonly config: PageRunConfig;
  readonly datasetName: string;
  readonly learner: LearnerState;
  readonly viewsRng: number;
  readonly metrics: readonly StepMetrics[];
  /** The weights a loaded encoder started from (null: the built-in one, seeded). */
  readonly initialEncoder: { readonly topology: object; readonly weightSpecs: tf.io.WeightsManifestEntry[]; readonly weightData: ArrayBuffer } | null;
}

/** The image side the page decodes to: the views' size (28 grey, 32 colour). */
export const pageImageSize = (channels: 1 | 3): number => (channels === 1 ? 28 : 32);

/**
 * The views for a dataset: byol's `grey` preset for one channel, `cifar` for three — the paper's two distributions
 * (App. B) at small size, without blur (see their docs in src/views/options.ts).
 */
export function viewsFor(dataset: Pick<PageDataset, 'size' | 'channels'>): ViewsConfig {
  const config = new ViewSampler(dataset.channels === 1 ? 'grey' : 'cifar', { seed: 0 }).config;
  if (config.size !== dataset.size) throw new ByolError('UNSUPPORTED', `the page trains on ${config.size}-pixel images; these are ${dataset.size}`, 'size');
  return config;
}

/** The encoder's input: pixels to [0, 1], then the views' normalization (what `byol embed` does with byol.json). */
export function prepare(pixels: tf.Tensor4D, views: ViewsConfig): tf.Tensor4D {
  return tf.tidy(() => normalize(toUnitRange(pixels), views.mean, views.std));
}

export function buildEncoder(config: PageRunConfig, dataset: Pick<PageDataset, 'size' | 'channels'>, seed = config.seed): tfl.LayersModel {
  const inputShape = [dataset.size, dataset.size, dataset.channels] as [number, number, number];
  return config.encoder === 'convnet' ? convNet({ inputShape, seed }) : resnet({ depth: 18, stem: 'cifar', inputShape, seed });
}

/** A model rebuilt from the weights a loaded encoder started with. */
async function modelOf(a: NonNullable<PageRunSnapshot['initialEncoder']>): Promise<tfl.LayersModel> {
  const tflayers = await import('@tensorflow/tfjs-layers');
  return tflayers.loadLayersModel(tf.io.fromMemory({ modelTopology: a.topology, weightSpecs: a.weightSpecs, weightData: a.weightData }));
}

export class PageRun {
  readonly learner: Byol;
  readonly views: ViewSampler;
  readonly metrics: StepMetrics[] = [];
  private readonly initialEncoder: PageRunSnapshot['initialEncoder'];

  /** `encoder`: a loaded model to start from (its weights are kept for the snapshot); default the built-in one. */
  constructor(
    readonly dataset: PageDataset,
    readonly config: PageRunConfig,
    encoder?: { model: tfl.LayersModel; artifacts: NonNullable<PageRunSnapshot['initialEncoder']> },
  ) {
    if (dataset.n < config.batch) throw new ByolError('INVALID_OPTION', `batch ${config.batch} is more than the ${dataset.n} images`, 'batch');
    if (encoder) {
      const shape = encoder.model.inputs[0]!.shape;
      if (shape[1] !== dataset.size || shape[2] !== dataset.size || shape[3] !== dataset.channels) {
        throw new ByolError('UNSUPPORTED', `the loaded encoder takes [${shape.slice(1)}] images; this dataset has [${dataset.size},${dataset.size},${dataset.channels}]`, 'encoder');
      }
    }
    this.initialEncoder = encoder?.artifacts ?? null;
    this.learner = new Byol({
      encoder: encoder ? encoder.model : buildEncoder(config, dataset),
      batchSize: config.batch,
      totalSteps: config.steps,
      projector: { hiddenDim: config.hidden, outputDim: 256 },
      predictor: { hiddenDim: config.hidden },
      baseLearningRate: config.lr,
      seed: config.seed,
    });
    const views = viewsFor(dataset);
    this.views = new ViewSampler(views, { seed: config.seed });
  }

  get step(): number {
    return this.learner.stepCount;
  }

  get done(): boolean {
    return this.step >= this.config.steps;
  }

  /** The images of step s: epoch e = ⌊s·B / N⌋ walks a permutation seeded by (seed, e); batches never straddle epochs. */
  batchIndices(step: number): Int32Array {
    const { n } = this.dataset;
    const perEpoch = Math.floor(n / this.config.batch);
    const epoch = Math.floor(step / perEpoch);
    const order = Int32Array.from({ length: n }, (_, i) => i);
    const rng = new Rng((this.config.seed * 1_000_003 + epoch * 7919) >>> 0);
    for (let i = n - 1; i > 0; i--) {
      const j = rng.int(0, i);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    const start = (step % perEpoch) * this.config.batch;
    return order.subarray(start, start + this.config.batch);
  }

  /** Pixels [k, size, size, channels] (int32 0–255) of the given images. */
  pixelsOf(indices: ArrayLike<number>): tf.Tensor4D {
    const { size, channels, pixels } = this.dataset;
    const per = size * size * channels;
    const out = new Int32Array(indices.length * per);
    for (let i = 0; i < indices.length; i++) out.set(pixels.subarray(indices[i]! * per, (indices[i]! + 1) * per), i * per);
    return tf.tensor4d(out, [indices.length, size, size, channels], 'int32');
  }

  /** One BYOL step on the next batch. */
  async trainStep(): Promise<StepMetrics> {
    if (this.done) throw new ByolError('INVALID_STATE', `the run has done its ${this.config.steps} steps`, 'steps');
    const started = performance.now();
    const x = this.pixelsOf(this.batchIndices(this.step));
    const [v1, v2] = this.views.views(x);
    x.dispose();
    try {
      const r = await this.learner.step(v1, v2);
      const m = { step: this.step, loss: r.loss, tau: r.tau, learningRate: r.learningRate, collapse: r.collapse, imagesPerSecond: this.config.batch / ((performance.now() - started) / 1000) };
      this.metrics.push(m);
      return m;
    } finally {
      tf.dispose([v1, v2]);
    }
  }

  /** Features [N, D] of every image (eval mode) by `encoder` (default the online one), in chunks. */
  async embed(encoder: tfl.LayersModel = this.learner.encoder as tfl.LayersModel, chunk = 256): Promise<Float32Array> {
    const views = this.views.config;
    const parts: Float32Array[] = [];
    for (let start = 0; start < this.dataset.n; start += chunk) {
      const idx = Int32Array.from({ length: Math.min(chunk, this.dataset.n - start) }, (_, i) => start + i);
      const f = tf.tidy(() => encoder.predict(prepare(this.pixelsOf(idx), views)) as tf.Tensor2D);
      parts.push(await f.data<'float32'>());
      f.dispose();
      await new Promise((r) => setTimeout(r, 0)); // let the page breathe between chunks
    }
    const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  /**
   * kNN top-1 (k = 20, T = 0.1) of features: the first 80 % of the images are the bank, the rest the queries. Null
   * without labels.
   */
  async knn(features: Float32Array): Promise<number | null> {
    const labels = this.dataset.labels;
    if (!labels) return null;
    const n = this.dataset.n;
    const dim = features.length / n;
    const split = Math.floor(n * 0.8);
    const bank = tf.tensor2d(features.subarray(0, split * dim), [split, dim]);
    const test = tf.tensor2d(features.subarray(split * dim), [n - split, dim]);
    try {
      return await knnAccuracy(bank, labels.subarray(0, split), test, labels.subarray(split), { k: 20 });
    } finally {
      tf.dispose([bank, test]);
    }
  }

  /** The encoder as the run started (seeded, or the loaded weights): the baseline of the kNN. Dispose it. */
  async initialModel(): Promise<tfl.LayersModel> {
    return this.initialEncoder ? modelOf(this.initialEncoder) : buildEncoder(this.config, this.dataset);
  }

  /** Features of every image by the encoder as the run started. */
  async initialEmbeddings(): Promise<Float32Array> {
    const m = await this.initialModel();
    try {
      return await this.embed(m);
    } finally {
      m.dispose();
    }
  }

  async snapshot(): Promise<PageRunSnapshot> {
    return {
      version: 1,
      config: this.config,
      datasetName: this.dataset.name,
      learner: await this.learner.getState(),
      viewsRng: this.views.rngState,
      metrics: [...this.metrics],
      initialEncoder: this.initialEncoder,
    };
  }

  /** Rebuilds a run from its snapshot on the same dataset, continuing exactly where it was saved. */
  static async restore(dataset: PageDataset, s: PageRunSnapshot): Promise<PageRun> {
    if (s.version !== 1) throw new ByolError('INVALID_STATE', `a saved run of version ${String(s.version)}; this page reads version 1`, 'snapshot');
    const encoder = s.initialEncoder ? { model: await modelOf(s.initialEncoder), artifacts: s.initialEncoder } : undefined;
    const run = new PageRun(dataset, s.config, encoder);
    run.learner.setState(s.learner);
    run.views.setRngState(s.viewsRng);
    run.metrics.push(...s.metrics);
    return run;
  }

  dispose(): void {
    this.learner.dispose();
  }
}
