/**
 * A whole pretraining run, as `byol pretrain` drives it: data, views, learner, progress, metrics, periodic kNN,
 * checkpoints and exact resume. Node only (files).
 *
 * What it guarantees: it writes only into a folder that is new, empty, or its own run (never replacing anything
 * else); one process at a time trains a run (the lock `run.lock`); every checkpoint appears whole or not at all; and
 * every way a run can stop — Ctrl-C, SIGTERM, a NaN, a bad image, a full disk, a kill before the first checkpoint —
 * ends with a line saying how to continue, which `byol pretrain --resume DIR` (with what may change) does.
 */
import { existsSync } from 'node:fs';
import { appendFile, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { Byol, type LearnerState, type StepResult } from '../byol/learner.js';
import { batchCount, batches, type ImageBatch, type ImageSource } from '../data/source.js';
import { ByolError } from '../errors.js';
import { knnAccuracy } from '../eval/knn.js';
import { effectiveRank, normalizedStd } from '../eval/rank.js';
import { writeFileAtomic } from '../io/atomic.js';
import { saveCheckpoint } from '../io/checkpoint.js';
import { isFsError, writeFailed } from '../io/fs.js';
import { parseJsonLines } from '../io/jsonl.js';
import { OutputDir, outputKindOf } from '../io/output.js';
import { saveLayersModelDir } from '../io/model-dir.js';
import { shownPath } from '../io/paths.js';
import { cloneArchitecture } from '../nets/encoder.js';
import { ViewSampler } from '../views/views.js';
import type { TorchArray } from '../nets/torch-weights.js';
import { wholeLearnerState, type WholeInfo } from './whole.js';
import { describeBackend, learnerOptions, resolvePretrainConfig, runViews, RESUME_CHANGES, type BackendRecord, type PretrainConfig, type ResumeChange } from './config.js';
import { checkpointName, CHECKPOINT_DIR, encoderModelFor, legacyConfig, listCheckpoints, pruneCheckpoints, readRunCheckpoint, removeStaleTemporaries, type CheckpointMeta } from './checkpoints.js';
import { openRunData, type EvalSets } from './data.js';
import { evalInputOf, measureFeatures, StopRequested, type EvalInput } from './features.js';
import { inUseError, LOCK_FILE, RunLock, runLockHolder } from './lock.js';

/** One line of `metrics.jsonl`. */
export type MetricsRecord =
  | { type: 'step'; step: number; epoch: number; loss: number; tau: number; lr: number; collapse: number; imagesPerSecond: number; elapsed: number }
  | { type: 'knn'; step: number; epoch: number; top1: number; bank: number; test: number }
  | { type: 'diagnostics'; step: number; epoch: number; featureStd: number; featureRank: number; featureDim: number; batch: number };

/** Whether a parsed line of `metrics.jsonl` is a record (every kind carries its step). */
export function isMetricsRecord(v: unknown): v is MetricsRecord {
  return typeof v === 'object' && v !== null && typeof (v as { step?: unknown }).step === 'number';
}

/** Collapse diagnostics of one batch's encoder features (inference mode). */
export interface Diagnostics {
  /** Std over the batch of the l2-normalized features, mean over dimensions: ≈ 1/√dim spread, → 0 collapsed. */
  readonly featureStd: number;
  /** RankMe: exp of the entropy of the normalized singular values; 1 = every image on one direction. */
  readonly featureRank: number;
  readonly featureDim: number;
  readonly batch: number;
}

/**
 * Whether diagnostics look like collapse (paper §3.2; byol-pytorch #44): an effective rank under 1 % of what the batch
 * could span (at least 1.5), or a normalized spread under a tenth of the healthy 1/√dim. Null when healthy, else why.
 */
export function collapseSign(d: Diagnostics): string | null {
  const span = Math.min(d.batch, d.featureDim);
  if (d.featureRank < Math.max(1.5, 0.01 * span)) return `encoder features have effective rank ${d.featureRank.toFixed(2)} of ${span} possible`;
  const healthy = 1 / Math.sqrt(d.featureDim);
  if (d.featureStd < 0.1 * healthy) return `the normalized encoder features barely vary (std ${d.featureStd.toExponential(2)}; spread ones ≈ ${healthy.toFixed(3)})`;
  return null;
}

/** Diagnostics of the online encoder on a batch (an inference pass; the batch is the step's first view). */
export async function diagnose(learner: Byol, view: tf.Tensor4D): Promise<Diagnostics> {
  const f = learner.embed(view);
  const [batch, dim] = f.shape;
  const data = (await f.data()) as Float32Array;
  f.dispose();
  return { featureStd: normalizedStd(data, batch, dim), featureRank: effectiveRank(data, batch, dim), featureDim: dim, batch };
}

/** A change made when a run was resumed, as `config.json` records it. */
export interface ResumeRecord {
  readonly step: number;
  readonly at: string;
  readonly backend: BackendRecord;
  readonly changed: Readonly<Record<string, { readonly from: unknown; readonly to: unknown }>>;
}

/** `config.json` of a run. */
export interface RunRecord {
  /** The run's configuration as it is now (with the changes made on resume). */
  readonly run: PretrainConfig;
  readonly dataset: { readonly name: string; readonly images: number; readonly imageShape: readonly number[]; readonly classes: readonly string[] | null };
  readonly stepsPerEpoch: number;
  readonly totalSteps: number;
  /** The backend it started on (older runs: a string such as "native (bf16)"). */
  readonly backend: BackendRecord | string;
  readonly resumes?: readonly ResumeRecord[];
  readonly createdAt: string;
  readonly [key: string]: unknown;
}

/** Where a run started with `init` keeps its starting weights (a model folder). */
export const INIT_DIR = 'init';

export const RUN_FILES = ['config.json', 'metrics.jsonl', CHECKPOINT_DIR, LOCK_FILE, 'files.json', INIT_DIR] as const;

/** A copy of a model (its architecture rebuilt, so batch norm gets the fused training pass) with its weights. */
function copyOf(model: tfl.LayersModel): tfl.LayersModel {
  const copy = cloneArchitecture(model);
  copy.setWeights(model.getWeights());
  return copy;
}

export interface PretrainHooks {
  /** Progress and messages. */
  readonly log: (line: string) => void;
  /** Called after each step (the CLI's progress bar). */
  readonly onStep?: (r: StepResult, info: { epoch: number; totalSteps: number; stepsPerEpoch: number; imagesPerSecond: number; etaSeconds: number; diagnostics: Diagnostics | null }) => void;
  /** Polled after each step and during evaluations: true stops the run after writing a checkpoint (Ctrl-C, SIGTERM). */
  readonly shouldStop?: () => boolean;
}

export interface PretrainResult {
  readonly status: 'done' | 'stopped';
  readonly step: number;
  readonly totalSteps: number;
  readonly checkpoint: string | null;
  readonly knn: number | null;
}

export interface PretrainArgs {
  /** The run folder. */
  readonly outDir: string;
  /** A new run's configuration (not with `resume`). */
  readonly config?: PretrainConfig;
  /** Continue the run in `outDir` from its newest checkpoint (or from step 0 when it has none yet). */
  readonly resume?: boolean;
  /** With `resume`: what to change ({@link RESUME_CHANGES}); recorded in config.json. */
  readonly changes?: Partial<Pick<PretrainConfig, ResumeChange>>;
  /** The backend in use (recorded, and restored by a later resume). */
  readonly backend: BackendRecord;
  /** Shown after the backend's name, e.g. "the run's". */
  readonly backendNote?: string;
  /** Start a new run in a non-empty folder byol did not make, beside its files (none replaced). */
  readonly overwrite?: boolean;
  /**
   * A new run's starting weights (online and target): an imported encoder and its byol.json. It is kept in the run
   * folder as `init/` (a model folder), which the run's config names as its encoder.
   */
  readonly init?: { readonly model: tfl.LayersModel; readonly info: Readonly<Record<string, unknown>> };
  /** false: no kNN during or at the end of the run, for a caller that evaluates it itself (byol ablate). Default true. */
  readonly evaluate?: boolean;
  /**
   * A new run that goes on from a whole-learner export (byol export --whole, or the PyTorch companion's
   * whole.safetensors) at its step: every weight, statistic and optimizer slot, and the views generator's state. The
   * config (`config`) is the export's; the dataset must give the same steps per epoch.
   */
  readonly from?: { readonly file: string; readonly tensors: ReadonlyMap<string, TorchArray>; readonly info: WholeInfo; readonly metrics?: readonly string[] };
}

/** The record of the run in `dir` (its config.json), or null when `dir` holds no run. Errors name a damaged file. */
export async function readRunRecord(dir: string): Promise<RunRecord | null> {
  const path = join(dir, 'config.json');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return null;
  }
  let record: Partial<RunRecord>;
  try {
    record = JSON.parse(text) as Partial<RunRecord>;
  } catch (e) {
    // A byol run's config.json is written atomically: unreadable JSON there means damage, elsewhere not our file.
    if ((await outputKindOf(dir)) !== 'run') return null;
    throw new ByolError('INVALID_DATA', `${path}: not valid JSON (${(e as Error).message})`, path);
  }
  return record && typeof record === 'object' && record.run && typeof record.stepsPerEpoch === 'number' ? (record as RunRecord) : null;
}

/** The backend a run last trained on, from its record. */
export function lastBackendOf(record: RunRecord): BackendRecord | null {
  const last = record.resumes?.length ? record.resumes[record.resumes.length - 1]!.backend : record.backend;
  if (typeof last === 'object' && last && ['native', 'wasm', 'cpu'].includes(last.name)) return last;
  const m = typeof last === 'string' ? /^(native|wasm|cpu)( \(bf16\))?$/.exec(last) : null;
  return m ? { name: m[1] as BackendRecord['name'], precision: m[2] ? 'bf16' : 'fp32' } : null;
}

/** Weighted kNN top-1 of an encoder on a run's evaluation sets. */
export function knnOf(encode: (x: tf.Tensor4D) => tf.Tensor2D, sets: EvalSets, input: EvalInput, config: PretrainConfig, shouldStop?: () => boolean): Promise<number> {
  return measureFeatures(
    sets.bank,
    config.knnBank,
    sets.test,
    config.knnTest,
    input,
    encode,
    (a, b) => knnAccuracy(a.features, a.labels, b.features, b.labels, { k: config.knnK, temperature: config.knnTemperature }),
    shouldStop,
  );
}

/** Steps a whole-learner export's history says were run outside byol since byol exported it (the PyTorch companion). */
export function stepsElsewhere(info: WholeInfo): number {
  const history = Array.isArray(info['history']) ? (info['history'] as { from?: unknown; to?: unknown }[]) : [];
  let n = 0;
  for (const h of history) if (Number.isInteger(h?.from) && Number.isInteger(h?.to) && (h.to as number) >= (h.from as number)) n += (h.to as number) - (h.from as number);
  return Math.min(n, info.step);
}

function allFinite(state: LearnerState): boolean {
  for (const group of Object.values(state.tensors)) for (const a of group) for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i]!)) return false;
  return true;
}

/** Applies the changes allowed on resume; refuses any other key. Returns the new config and what changed. */
function applyChanges(config: PretrainConfig, changes: PretrainArgs['changes']): { config: PretrainConfig; changed: Record<string, { from: unknown; to: unknown }> } {
  const changed: Record<string, { from: unknown; to: unknown }> = {};
  const next: Record<string, unknown> = { ...config };
  for (const [key, value] of Object.entries(changes ?? {})) {
    if (!(RESUME_CHANGES as readonly string[]).includes(key)) throw new ByolError('INVALID_OPTION', `a resumed run cannot change ${key} (it may change ${RESUME_CHANGES.join(', ')})`, key);
    if (value === undefined || next[key] === value) continue;
    changed[key] = { from: next[key], to: value };
    next[key] = value;
  }
  return { config: resolvePretrainConfig(next as unknown as PretrainConfig), changed };
}

/**
 * The lines of `metrics.jsonl` that a resume from `step` keeps: a last line cut short by a crash or a full disk is
 * dropped (and said), lines past the checkpoint go (those steps run again). A damaged line elsewhere is an error.
 */
async function metricsToKeep(path: string, step: number, log: (line: string) => void): Promise<{ lines: string[]; records: MetricsRecord[] }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return { lines: [], records: [] };
  }
  const kept = parseJsonLines(text, {
    valid: isMetricsRecord,
    damaged: (line) => new ByolError('INVALID_DATA', `${shownPath(path)}: line ${line} is not a metrics record; fix or delete that line, then resume again`, path),
    torn: (length) => log(`${shownPath(path)}: dropped its last line, cut short (${length} bytes; a write was interrupted)`),
  }).filter((r) => r.value.step <= step);
  return { lines: kept.map((r) => r.text), records: kept.map((r) => r.value) };
}

const short = (x: number) => String(Number(x.toPrecision(2)));

/**
 * Starts a run in `outDir` or, with `resume`, continues the run there from its newest checkpoint exactly: same
 * weights, optimizer state, step, data order and views generator (the files of an image folder are the run's).
 */
export async function pretrain(args: PretrainArgs, hooks: PretrainHooks): Promise<PretrainResult> {
  const outDir = resolve(args.outDir);
  const dirShown = shownPath(outDir);
  const configPath = join(outDir, 'config.json');
  const metricsPath = join(outDir, 'metrics.jsonl');
  const filesPath = join(outDir, 'files.json');
  const record = await readRunRecord(outDir);
  let lock: RunLock | null = null;
  const releaseOnExit = () => lock?.releaseSync();
  const resumeHint = (extra = '') => `byol pretrain --resume ${args.outDir}${extra}`;

  let config: PretrainConfig;
  let resumeFrom: Awaited<ReturnType<typeof readRunCheckpoint>> | null = null;
  let resumePath: string | null = null;
  let changed: Record<string, { from: unknown; to: unknown }> = {};
  if (args.resume) {
    if (!record) throw new ByolError('INVALID_OPTION', `${dirShown}: no run to resume (no config.json of byol's); start one without --resume`, 'resume');
    lock = await RunLock.acquire(outDir, dirShown);
    process.on('exit', releaseOnExit);
  } else {
    if (!args.config) throw new ByolError('INVALID_OPTION', 'a config is needed to start a run', 'config');
    if (record) {
      const holder = await runLockHolder(outDir);
      if (holder) throw inUseError(dirShown, holder);
      const all = await listCheckpoints(outDir);
      if (all.length > 0) {
        throw new ByolError('OUTPUT_EXISTS', `${dirShown} already holds a run (newest checkpoint: step ${all[0]!.step}); continue it with ${resumeHint()}, or choose another --out`, 'out');
      }
    }
  }

  let learner: Byol | null = null;
  let source: ImageSource | null = null;
  let knnSets: EvalSets | null = null;
  try {
    if (args.resume) {
      for (const dir of [outDir, join(outDir, CHECKPOINT_DIR)]) for (const f of await removeStaleTemporaries(dir)) hooks.log(`removed ${f}, left by a write that was killed`);
      let firstError: unknown = null;
      for (const c of await listCheckpoints(outDir)) {
        try {
          resumeFrom = await readRunCheckpoint(c.path);
          resumePath = c.path;
          break;
        } catch (e) {
          // A damaged file (not one from a newer byol): fall back to the one before, saying so.
          if (!(e instanceof ByolError) || e.code !== 'INVALID_STATE' || /newer byol/.test(e.message)) throw e;
          firstError ??= e;
          hooks.log(`${e.message.split('\n')[0]}; trying the checkpoint before it`);
        }
      }
      if (!resumeFrom && firstError) throw firstError;
      ({ config, changed } = applyChanges(resumeFrom ? resumeFrom.meta.config : resolvePretrainConfig(legacyConfig(record!.run)), args.changes));
      if (!resumeFrom) hooks.log(`${dirShown}: no checkpoint yet, so the run starts over from step 0 with its saved config`);
    } else {
      config = args.config!;
    }

    // Everything that can fail on bad input fails here, before anything is written.
    const views = runViews(config);
    let files: string[] | null = null;
    if (resumeFrom && existsSync(filesPath)) {
      try {
        files = JSON.parse(await readFile(filesPath, 'utf8')) as string[];
      } catch (e) {
        throw new ByolError('INVALID_DATA', `${filesPath}: the run's list of image files is damaged (${(e as Error).message})`, filesPath);
      }
    }
    const data = await openRunData(config, views, files, hooks.log);
    // The run records the part it trains on (a labelled folder's `@train`), so that a resume and `eval` find it.
    config = { ...config, dataset: data.dataset };
    source = data.source;
    knnSets = data.knn;
    const [h, w, c] = source.imageShape;
    if (c !== views.channels) {
      throw new ByolError('INVALID_OPTION', `--preset ${config.preset} takes ${views.channels}-channel images; ${source.name} has ${c} (use --preset ${c === 1 ? 'grey' : 'cifar or imagenet'})`, 'preset');
    }
    if (source.length < config.batchSize) throw new ByolError('INVALID_OPTION', `--batch ${config.batchSize} is larger than the dataset (${source.length} images)`, 'batch');
    const stepsPerEpoch = batchCount(source.length, config.batchSize, true);
    const totalSteps = stepsPerEpoch * config.epochs;
    if (args.from && args.from.info['stepsPerEpoch'] !== stepsPerEpoch) {
      throw new ByolError('INVALID_STATE', `${args.from.file}: exported with ${String(args.from.info['stepsPerEpoch'])} steps per epoch, ${source.name} gives ${stepsPerEpoch} (another dataset, or a folder that changed?)`, args.from.file);
    }
    if (resumeFrom && resumeFrom.meta.stepsPerEpoch !== stepsPerEpoch) {
      throw new ByolError('INVALID_STATE', `${resumePath}: written with ${resumeFrom.meta.stepsPerEpoch} steps per epoch, the dataset now gives ${stepsPerEpoch}`, resumePath!);
    }
    if (args.init && !args.resume) config = { ...config, encoder: join(outDir, INIT_DIR) };
    const encoderModel = args.init && !args.resume ? copyOf(args.init.model) : await encoderModelFor(config, resumeFrom?.meta.encoderTopology ?? args.from?.info['encoderTopology'] ?? null);
    const encoderTopology: unknown = encoderModel ? encoderModel.toJSON(null, false) : null;
    learner = new Byol(learnerOptions(config, stepsPerEpoch, encoderModel));
    const sampler = new ViewSampler(views, { seed: config.seed + 1 });
    const input = evalInputOf(views);
    let step = 0;
    // Checked before the folder is claimed: an export that does not fit writes nothing.
    const fromState = args.from ? wholeLearnerState(learner, args.from.tensors, args.from.info, args.from.file) : null;

    // Now the folder: a new run claims it (new, empty, or --overwrite beside the user's files) and takes the lock.
    if (!args.resume) {
      if (record) hooks.log(`${dirShown} holds a run that stopped before its first checkpoint: starting it over with these options`);
      else await OutputDir.claim(args.outDir, { kind: 'run', names: [...RUN_FILES], ...(args.overwrite ? { overwrite: true } : {}) });
      lock = await RunLock.acquire(outDir, dirShown);
      process.on('exit', releaseOnExit);
      if ((await listCheckpoints(outDir)).length > 0) throw new ByolError('OUTPUT_EXISTS', `${dirShown}: another process started a run here meanwhile; choose another --out`, 'out');
      for (const dir of [outDir, join(outDir, CHECKPOINT_DIR)]) await removeStaleTemporaries(dir);
      if (args.init) await saveLayersModelDir(args.init.model, join(outDir, INIT_DIR), { overwrite: true, extra: { 'byol.json': `${JSON.stringify(args.init.info, null, 2)}\n` } });
    }

    const runRecord = (): RunRecord => ({
      run: config,
      dataset: { name: source!.name, images: source!.length, imageShape: [h, w, c], classes: source!.classes },
      stepsPerEpoch,
      totalSteps,
      backend: args.backend,
      views,
      learner: { ...learner!.options, encoder: encoderModel ? config.encoder : learner!.options.encoder },
      createdAt: new Date().toISOString(),
      ...(args.from ? { continuedFrom: { file: resolve(args.from.file), step: args.from.info.step, history: args.from.info['history'] ?? [] } } : {}),
    });
    const backendLine = `backend ${describeBackend(args.backend)}${args.backendNote ? ` (${args.backendNote})` : ''}`;
    const changeLine = Object.entries(changed).map(([k, v]) => `${k} ${JSON.stringify(v.from)} → ${JSON.stringify(v.to)}`).join(', ');
    let knnRecords: MetricsRecord[] = [];
    if (resumeFrom) {
      learner.setState(resumeFrom.state);
      sampler.setRngState(resumeFrom.meta.viewRng);
      step = resumeFrom.meta.step;
      const kept = await metricsToKeep(metricsPath, step, hooks.log);
      knnRecords = kept.records.filter((r) => r.type === 'knn');
      await writeFileAtomic(metricsPath, kept.lines.map((l) => `${l}\n`).join(''));
      const resumes = [...(record!.resumes ?? []), { step, at: new Date().toISOString(), backend: args.backend, changed }];
      await writeFileAtomic(configPath, `${JSON.stringify({ ...record, run: config, resumes }, null, 2)}\n`);
      hooks.log(`resuming ${dirShown} at step ${step}/${totalSteps} (epoch ${Math.min(config.epochs, Math.floor(step / stepsPerEpoch) + 1)}) from ${shownPath(resumePath!)}; ${backendLine}`);
      if (changeLine) hooks.log(`changed: ${changeLine} (recorded in config.json)`);
      if (data.files && files && source.name.startsWith('folder:')) {
        const now = await openRunData({ ...config, limit: null }, views, null, () => undefined).catch(() => null);
        if (now) {
          const known = new Set(files);
          const added = (now.files ?? []).filter((f) => !known.has(f)).length;
          if (added > 0) hooks.log(`${added === 1 ? '1 image' : `${added} images`} added to the folder since the run started ${added === 1 ? 'is' : 'are'} not used (a run keeps its files); start a new run to train on them`);
          await Promise.all([now.source.close(), now.knn?.bank.close(), now.knn?.test.close()]);
        }
      }
    } else {
      const fresh = args.resume && record ? { ...runRecord(), resumes: [...(record.resumes ?? []), { step: 0, at: new Date().toISOString(), backend: args.backend, changed }] } : runRecord();
      await writeFileAtomic(configPath, `${JSON.stringify(fresh, null, 2)}\n`);
      await writeFileAtomic(metricsPath, (args.from?.metrics ?? []).map((l) => `${l}\n`).join(''));
      if (data.files) await writeFileAtomic(filesPath, JSON.stringify(data.files));
      const images = `${source.length} images, ${config.epochs} epoch${config.epochs === 1 ? '' : 's'} × ${stepsPerEpoch} steps of ${config.batchSize}`;
      hooks.log(`run ${dirShown}: ${source.name}, ${images}; ${backendLine}`);
      if (fromState && args.from) {
        learner.setState(fromState);
        if (typeof args.from.info['viewRng'] === 'number') sampler.setRngState(args.from.info['viewRng']);
        // The views generator is at the exported step; the steps run elsewhere since draw their views' choices now, so
        // that the stream goes on as one uninterrupted run's would (views of fixed-size images draw the same numbers).
        for (let k = 0; k < stepsElsewhere(args.from.info); k++) sampler.drawParams(config.batchSize, h, w);
        step = fromState.step;
        hooks.log(`continuing at step ${step}/${totalSteps} (epoch ${Math.min(config.epochs, Math.floor(step / stepsPerEpoch) + 1)}) from ${shownPath(args.from.file)}: its weights, batch-norm statistics and optimizer state; τ ${learner.tauAt(step).toFixed(6)}, lr ${learner.learningRateAt(step).toPrecision(4)}`);
      }
      if (changeLine) hooks.log(`changed: ${changeLine} (recorded in config.json)`);
    }
    if (data.knnNote && args.evaluate !== false) hooks.log(data.knnNote);

    // The newest checkpoint on disk: the one resumed from, until this process writes one.
    let lastCheckpoint: string | null = resumePath;
    let lastCheckpointStep = resumeFrom ? step : -1;
    const stoppedAt = () => `the run stopped at step ${step}; ${lastCheckpoint ? `its last checkpoint is ${shownPath(lastCheckpoint)}` : 'no checkpoint was written yet'}`;
    const wrapWrite = (e: unknown, what: string): unknown =>
      e instanceof ByolError && e.code === 'WRITE_FAILED'
        ? new ByolError('WRITE_FAILED', `${e.message.replace(e.option ?? '', shownPath(e.option ?? ''))} (${what}); ${stoppedAt()}; make room, then continue with ${resumeHint()}`, e.option)
        : isFsError(e)
          ? writeFailed(e.path ?? outDir, e, what, `${stoppedAt()}; continue with ${resumeHint()}`)
          : e;
    const writeCheckpoint = async (): Promise<string> => {
      const state = await learner!.getState();
      if (!allFinite(state)) {
        throw new ByolError(
          'TRAINING_DIVERGED',
          `the weights are no longer finite at step ${step}; stopped without saving. ${lastCheckpoint ? `${shownPath(lastCheckpoint)} is the last good checkpoint` : 'No checkpoint was written yet'}; ` +
            `continue with a lower learning rate: ${resumeHint(` --lr ${short(learner!.options.baseLearningRate / 2)}`)}`,
        );
      }
      const meta: CheckpointMeta = { byolRun: 1, config, step, stepsPerEpoch, viewRng: sampler.rngState, encoderTopology, backend: args.backend, savedAt: new Date().toISOString() };
      const path = join(outDir, CHECKPOINT_DIR, checkpointName(step));
      try {
        await saveCheckpoint(path, state, meta);
        await pruneCheckpoints(outDir, config.keep);
      } catch (e) {
        throw wrapWrite(e, `checkpoint of step ${step}`);
      }
      lastCheckpoint = path;
      lastCheckpointStep = step;
      return path;
    };
    const every = config.checkpointEvery ?? stepsPerEpoch;
    const append = async (r: MetricsRecord) => {
      try {
        await appendFile(metricsPath, `${JSON.stringify(r)}\n`);
      } catch (e) {
        throw wrapWrite(e, 'metrics.jsonl');
      }
    };
    let knn: number | null = null;
    const shouldStop = () => hooks.shouldStop?.() ?? false;
    const stopNow = async (): Promise<PretrainResult> => {
      if (lastCheckpointStep !== step) await writeCheckpoint();
      hooks.log(`stopped at step ${step}/${totalSteps}; checkpoint ${lastCheckpoint ? shownPath(lastCheckpoint) : 'none'}; continue with: ${resumeHint()}`);
      return { status: 'stopped', step, totalSteps, checkpoint: lastCheckpoint, knn };
    };
    const evaluationDue = (s: number) => args.evaluate !== false && s > 0 && s % stepsPerEpoch === 0 && (s === totalSteps || (config.knnEvery > 0 && (s / stepsPerEpoch) % config.knnEvery === 0));
    /** kNN after an epoch; false when a stop request interrupted it (nothing of it is kept). */
    const evaluate = async (): Promise<boolean> => {
      if (!knnSets) return true;
      const epoch = step / stepsPerEpoch;
      const t0 = Date.now();
      try {
        knn = await knnOf((x) => learner!.embed(x), knnSets, input, config, shouldStop);
      } catch (e) {
        if (e instanceof StopRequested) return false;
        throw e;
      }
      await append({ type: 'knn', step, epoch, top1: knn, bank: Math.min(config.knnBank, knnSets.bank.length), test: Math.min(config.knnTest, knnSets.test.length) });
      hooks.log(`epoch ${epoch}: kNN top-1 ${(100 * knn).toFixed(2)} % (k=${config.knnK}, T=${config.knnTemperature}; ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      return true;
    };

    // A resume at an epoch's end whose evaluation was interrupted runs it first.
    if (resumeFrom && evaluationDue(step) && !knnRecords.some((r) => r.step === step)) {
      if (!(await evaluate())) return await stopNow();
    }
    const started = Date.now();
    const firstStep = step;
    let lastDiagnostics: Diagnostics | null = null;
    let warnedCollapse = false;
    while (step < totalSteps) {
      const epoch = Math.floor(step / stepsPerEpoch);
      const startBatch = step % stepsPerEpoch;
      const order = batches(source, { batchSize: config.batchSize, seed: config.seed, epoch, dropLast: true, startBatch });
      for (;;) {
        let next: IteratorResult<ImageBatch, void>;
        try {
          next = await order.next();
        } catch (e) {
          if (e instanceof ByolError && e.code === 'INVALID_DATA') {
            throw new ByolError('INVALID_DATA', `${e.message}; ${stoppedAt()}; fix or restore the file and continue with ${resumeHint()}, or leave such files out: ${resumeHint(' --skip-bad')}`, e.option);
          }
          throw e;
        }
        if (next.done) break;
        const batch = next.value;
        if (batch.shape[0] < 2) throw new ByolError('INVALID_DATA', `${source.name}: a batch kept ${batch.shape[0]} readable image(s) of ${config.batchSize}; ${stoppedAt()}`, source.name);
        const x = tf.tensor4d(batch.images, [...batch.shape], 'int32');
        const [v1, v2] = sampler.views(x);
        x.dispose();
        let r: StepResult;
        let diag: Diagnostics | null = null;
        try {
          r = await learner.step(v1, v2);
          if (config.diagnoseEvery > 0 && r.step % config.diagnoseEvery === 0 && Number.isFinite(r.loss)) diag = await diagnose(learner, v1);
        } catch (e) {
          // WebAssembly's heap is at most 4 GiB, and an out-of-memory abort leaves the module unusable.
          if (args.backend.name === 'wasm' && /^Aborted\(|memory access out of bounds|Cannot enlarge memory|out of memory/i.test((e as Error)?.message ?? '')) {
            throw new ByolError(
              'INVALID_OPTION',
              `the wasm backend ran out of memory at batch ${config.batchSize} (WebAssembly holds at most 4 GiB; a CIFAR ResNet-18 step takes 3.8 GiB at batch 32); ` +
                `${stoppedAt()}; start again with a smaller --batch, or use the native backend`,
              'batch',
            );
          }
          throw e;
        } finally {
          tf.dispose([v1, v2]);
        }
        if (!Number.isFinite(r.loss)) {
          throw new ByolError(
            'TRAINING_DIVERGED',
            `loss became ${r.loss} at step ${r.step} (epoch ${epoch + 1}); stopped. ${lastCheckpoint ? `${shownPath(lastCheckpoint)} is the last good checkpoint` : 'No checkpoint was written yet'}; ` +
              `continue with a lower learning rate: ${resumeHint(` --lr ${short(learner.options.baseLearningRate / 2)}`)}${lastCheckpoint ? '' : ' (starts over from step 0)'}, or raise --warmup-epochs`,
          );
        }
        step = r.step;
        const elapsed = (Date.now() - started) / 1000;
        const imagesPerSecond = ((step - firstStep) * config.batchSize) / Math.max(elapsed, 1e-3);
        await append({ type: 'step', step, epoch: epoch + 1, loss: r.loss, tau: r.tau, lr: r.learningRate, collapse: r.collapse, imagesPerSecond, elapsed });
        if (diag) {
          lastDiagnostics = diag;
          await append({ type: 'diagnostics', step, epoch: epoch + 1, ...diag });
          const sign = collapseSign(diag);
          if (sign && !warnedCollapse) {
            warnedCollapse = true;
            hooks.log(`warning: the run looks collapsed at step ${step}: ${sign}. BYOL collapses without a predictor or with τ = 0 (paper Table 5); else lower --lr or raise --warmup-epochs`);
          }
        }
        hooks.onStep?.(r, { epoch, totalSteps, stepsPerEpoch, imagesPerSecond, etaSeconds: ((totalSteps - step) * config.batchSize) / Math.max(imagesPerSecond, 1e-9), diagnostics: lastDiagnostics });
        if (step % every === 0 || step === totalSteps) await writeCheckpoint();
        if (shouldStop()) return await stopNow();
      }
      if (evaluationDue(step) && !(await evaluate())) return await stopNow();
    }
    return { status: 'done', step, totalSteps, checkpoint: lastCheckpoint, knn };
  } finally {
    learner?.dispose();
    await source?.close();
    if (knnSets) await Promise.all([knnSets.bank.close(), knnSets.test.close()]);
    await lock?.release();
    process.off('exit', releaseOnExit);
  }
}
