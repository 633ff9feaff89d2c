/**
 * A whole pretraining run, as `byol pretrain` drives it: data, views, learner, progress, metrics, periodic kNN,
 * checkpoints and exact resume. Node only (files).
 */
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { Byol, type LearnerState, type StepResult } from '../byol/learner.js';
import { batchCount, batches, type ImageSource } from '../data/source.js';
import { openDataset, parseDatasetSpec } from '../data/spec.js';
import { ByolError } from '../errors.js';
import { knnAccuracy } from '../eval/knn.js';
import { writeFileAtomic } from '../io/atomic.js';
import { saveCheckpoint } from '../io/checkpoint.js';
import { shownPath } from '../io/paths.js';
import { ViewSampler } from '../views/views.js';
import { learnerOptions, runViews, type PretrainConfig } from './config.js';
import { checkpointName, CHECKPOINT_DIR, encoderModelFor, listCheckpoints, pruneCheckpoints, readRunCheckpoint, type CheckpointMeta } from './checkpoints.js';
import { evalInputOf, measureFeatures, type EvalInput } from './features.js';

/** One line of `metrics.jsonl`. */
export type MetricsRecord =
  | { type: 'step'; step: number; epoch: number; loss: number; tau: number; lr: number; collapse: number; imagesPerSecond: number; elapsed: number }
  | { type: 'knn'; step: number; epoch: number; top1: number; bank: number; test: number };

export interface PretrainHooks {
  /** Progress and messages. */
  readonly log: (line: string) => void;
  /** Called after each step (the CLI's progress bar). */
  readonly onStep?: (r: StepResult, info: { epoch: number; totalSteps: number; stepsPerEpoch: number; imagesPerSecond: number; etaSeconds: number }) => void;
  /** Polled after each step: true stops the run after writing a checkpoint (Ctrl-C). */
  readonly shouldStop?: () => boolean;
}

export interface PretrainResult {
  readonly status: 'done' | 'stopped';
  readonly step: number;
  readonly totalSteps: number;
  readonly checkpoint: string | null;
  readonly knn: number | null;
}

/** A labelled dataset that is usable for kNN: the train split as bank and the test split. */
async function openKnnSets(config: PretrainConfig): Promise<{ bank: ImageSource; test: ImageSource } | null> {
  const spec = parseDatasetSpec(config.dataset);
  if (spec.kind === 'folder') return null;
  try {
    const bank = await openDataset({ ...spec, split: 'train' });
    if (!bank.classes && !(await bank.read([0])).labels) {
      await bank.close();
      return null;
    }
    const test = await openDataset({ ...spec, split: 'test' });
    return { bank, test };
  } catch {
    return null;
  }
}

/** Weighted kNN top-1 of an encoder on a run's evaluation sets. */
export function knnOf(encode: (x: tf.Tensor4D) => tf.Tensor2D, sets: { bank: ImageSource; test: ImageSource }, input: EvalInput, config: PretrainConfig): Promise<number> {
  return measureFeatures(sets.bank, config.knnBank, sets.test, config.knnTest, input, encode, (a, b) =>
    knnAccuracy(a.features, a.labels, b.features, b.labels, { k: config.knnK, temperature: config.knnTemperature }),
  );
}

/** The first `limit` images of a source. */
function limited(source: ImageSource, limit: number | null): ImageSource {
  if (limit === null || limit >= source.length) return source;
  return {
    name: `${source.name}[:${limit}]`,
    length: limit,
    imageShape: source.imageShape,
    classes: source.classes,
    read: (i) => source.read(i),
    close: () => source.close(),
  };
}

function allFinite(state: LearnerState): boolean {
  for (const group of Object.values(state.tensors)) for (const a of group) for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i]!)) return false;
  return true;
}

/**
 * Starts a run in `outDir` (which must not hold one) or, with `resume`, continues the run there from its newest
 * checkpoint exactly: same weights, optimizer state, step, data order and views generator.
 */
export async function pretrain(args: { outDir: string; config?: PretrainConfig; resume?: boolean; backend: string }, hooks: PretrainHooks): Promise<PretrainResult> {
  const outDir = resolve(args.outDir);
  const configPath = join(outDir, 'config.json');
  const metricsPath = join(outDir, 'metrics.jsonl');
  let config: PretrainConfig;
  let resumeFrom: Awaited<ReturnType<typeof readRunCheckpoint>> | null = null;
  let resumePath: string | null = null;
  if (args.resume) {
    if (!existsSync(configPath)) throw new ByolError('INVALID_OPTION', `${outDir}: no run to resume (no config.json); start one without --resume`, 'resume');
    const all = await listCheckpoints(outDir);
    if (all.length === 0) throw new ByolError('INVALID_OPTION', `${outDir}: the run has no checkpoint yet; start it again without --resume`, 'resume');
    resumePath = all[0]!.path;
    resumeFrom = await readRunCheckpoint(resumePath);
    config = resumeFrom.meta.config;
  } else {
    if (!args.config) throw new ByolError('INVALID_OPTION', 'a config is needed to start a run', 'config');
    if (existsSync(configPath)) throw new ByolError('INVALID_OPTION', `${outDir} already holds a run; continue it with --resume or choose another --out`, 'out');
    config = args.config;
  }

  const views = runViews(config);
  const source = limited(await openDataset(config.dataset), config.limit);
  const [h, w, c] = source.imageShape;
  if (c !== views.channels) {
    throw new ByolError('INVALID_OPTION', `--preset ${config.preset} takes ${views.channels}-channel images; ${source.name} has ${c} (use --preset ${c === 1 ? 'grey' : 'cifar or imagenet'})`, 'preset');
  }
  if (source.length < config.batchSize) throw new ByolError('INVALID_OPTION', `--batch ${config.batchSize} is larger than the dataset (${source.length} images)`, 'batch');
  const stepsPerEpoch = batchCount(source.length, config.batchSize, true);
  const totalSteps = stepsPerEpoch * config.epochs;
  const encoderModel = await encoderModelFor(config, resumeFrom?.meta.encoderTopology ?? null);
  const encoderTopology: unknown = encoderModel ? encoderModel.toJSON(null, false) : null;
  const learner = new Byol(learnerOptions(config, stepsPerEpoch, encoderModel));
  const sampler = new ViewSampler(views, { seed: config.seed + 1 });
  const input = evalInputOf(views);
  const knnSets = await openKnnSets(config);
  let step = 0;

  try {
    if (resumeFrom) {
      if (resumeFrom.meta.stepsPerEpoch !== stepsPerEpoch) {
        throw new ByolError('INVALID_STATE', `${resumePath}: written with ${resumeFrom.meta.stepsPerEpoch} steps per epoch, the dataset now gives ${stepsPerEpoch}`, resumePath!);
      }
      learner.setState(resumeFrom.state);
      sampler.setRngState(resumeFrom.meta.viewRng);
      step = resumeFrom.meta.step;
      // Metrics past the checkpoint belong to steps that will run again.
      const kept = existsSync(metricsPath)
        ? (await readFile(metricsPath, 'utf8')).split('\n').filter((l) => l.trim() !== '' && (JSON.parse(l) as MetricsRecord).step <= step)
        : [];
      await writeFileAtomic(metricsPath, kept.map((l) => `${l}\n`).join(''));
      hooks.log(`resuming ${outDir} at step ${step}/${totalSteps} (epoch ${Math.floor(step / stepsPerEpoch) + 1}) from ${resumePath}`);
    } else {
      await mkdir(join(outDir, CHECKPOINT_DIR), { recursive: true });
      const record = {
        run: config,
        dataset: { name: source.name, images: source.length, imageShape: [h, w, c], classes: source.classes },
        stepsPerEpoch,
        totalSteps,
        backend: args.backend,
        views,
        learner: { ...learner.options, encoder: encoderModel ? config.encoder : learner.options.encoder },
        createdAt: new Date().toISOString(),
      };
      await writeFileAtomic(configPath, `${JSON.stringify(record, null, 2)}\n`);
      await writeFileAtomic(metricsPath, '');
      hooks.log(`run ${shownPath(outDir)}: ${source.name}, ${source.length} images, ${config.epochs} epoch${config.epochs === 1 ? '' : 's'} × ${stepsPerEpoch} steps of ${config.batchSize}; backend ${args.backend}`);
    }

    // The newest checkpoint on disk: the one resumed from, until this process writes one.
    let lastCheckpoint: string | null = resumePath;
    const writeCheckpoint = async (): Promise<string> => {
      const state = await learner.getState();
      if (!allFinite(state)) {
        throw new ByolError('TRAINING_DIVERGED', `the weights are no longer finite at step ${step}; stopped without saving${lastCheckpoint ? `; last good checkpoint: ${lastCheckpoint}` : ''}`);
      }
      const meta: CheckpointMeta = { byolRun: 1, config, step, stepsPerEpoch, viewRng: sampler.rngState, encoderTopology, savedAt: new Date().toISOString() };
      const path = join(outDir, CHECKPOINT_DIR, checkpointName(step));
      await saveCheckpoint(path, state, meta);
      await pruneCheckpoints(outDir, config.keep);
      lastCheckpoint = path;
      return path;
    };
    const every = config.checkpointEvery ?? stepsPerEpoch;
    const append = (r: MetricsRecord) => appendFile(metricsPath, `${JSON.stringify(r)}\n`);
    let knn: number | null = null;
    const evaluate = async (epoch: number) => {
      if (!knnSets) return;
      const t0 = Date.now();
      knn = await knnOf((x) => learner.embed(x), knnSets, input, config);
      await append({ type: 'knn', step, epoch: epoch + 1, top1: knn, bank: Math.min(config.knnBank, knnSets.bank.length), test: Math.min(config.knnTest, knnSets.test.length) });
      hooks.log(`epoch ${epoch + 1}: kNN top-1 ${(100 * knn).toFixed(2)} % (k=${config.knnK}, T=${config.knnTemperature}; ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    };

    const started = Date.now();
    const firstStep = step;
    while (step < totalSteps) {
      const epoch = Math.floor(step / stepsPerEpoch);
      const startBatch = step % stepsPerEpoch;
      for await (const batch of batches(source, { batchSize: config.batchSize, seed: config.seed, epoch, dropLast: true, startBatch })) {
        const x = tf.tensor4d(batch.images, [...batch.shape], 'int32');
        const [v1, v2] = sampler.views(x);
        x.dispose();
        let r: StepResult;
        try {
          r = await learner.step(v1, v2);
        } finally {
          tf.dispose([v1, v2]);
        }
        if (!Number.isFinite(r.loss)) {
          throw new ByolError(
            'TRAINING_DIVERGED',
            `loss became ${r.loss} at step ${r.step} (epoch ${epoch + 1}); stopped. ${lastCheckpoint ? `${shownPath(lastCheckpoint)} is the last good checkpoint` : 'No checkpoint was written yet'}; lower --lr or raise --warmup-epochs`,
          );
        }
        step = r.step;
        const elapsed = (Date.now() - started) / 1000;
        const imagesPerSecond = ((step - firstStep) * config.batchSize) / Math.max(elapsed, 1e-3);
        await append({ type: 'step', step, epoch: epoch + 1, loss: r.loss, tau: r.tau, lr: r.learningRate, collapse: r.collapse, imagesPerSecond, elapsed });
        hooks.onStep?.(r, { epoch, totalSteps, stepsPerEpoch, imagesPerSecond, etaSeconds: ((totalSteps - step) * config.batchSize) / Math.max(imagesPerSecond, 1e-9) });
        const stop = hooks.shouldStop?.() ?? false;
        if (step % every === 0 || step === totalSteps || stop) await writeCheckpoint();
        if (stop) {
          hooks.log(`stopped at step ${step}/${totalSteps}; checkpoint ${lastCheckpoint}; continue with: byol pretrain --resume ${args.outDir}`);
          return { status: 'stopped', step, totalSteps, checkpoint: lastCheckpoint, knn };
        }
      }
      const done = Math.floor(step / stepsPerEpoch);
      if (step === totalSteps || (config.knnEvery > 0 && done % config.knnEvery === 0)) await evaluate(done - 1);
    }
    return { status: 'done', step, totalSteps, checkpoint: lastCheckpoint, knn };
  } finally {
    learner.dispose();
    await source.close();
    if (knnSets) await Promise.all([knnSets.bank.close(), knnSets.test.close()]);
  }
}
