import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import * as tfl from '@tensorflow/tfjs-layers';
import { Byol } from '../byol/learner.js';
import { ByolError } from '../errors.js';
import { processAlive, temporaryWriter } from '../io/atomic.js';
import { loadCheckpoint } from '../io/checkpoint.js';
import { loadLayersModelDir } from '../io/model-dir.js';
import { cloneArchitecture } from '../nets/encoder.js';
import { isBuiltinEncoder, learnerOptions, resolvePretrainConfig, type BackendRecord, type PretrainConfig } from './config.js';
import { runLockHolder } from './lock.js';

/** What a run stores beside the learner state in each checkpoint. */
export interface CheckpointMeta {
  readonly byolRun: 1;
  readonly config: PretrainConfig;
  readonly step: number;
  readonly stepsPerEpoch: number;
  /** State of the views' generator after this step. */
  readonly viewRng: number;
  /** The encoder's topology when it came from a model folder, so that a checkpoint stands alone. */
  readonly encoderTopology: unknown;
  /** The backend the run was on when this was written (absent in checkpoints of earlier versions). */
  readonly backend?: BackendRecord;
  readonly savedAt: string;
}

export const CHECKPOINT_DIR = 'checkpoints';

export function checkpointName(step: number): string {
  return `step-${String(step).padStart(8, '0')}.byol`;
}

/**
 * The run's complete checkpoints, newest first (by step). Only finished files carry the name `step-N.byol` (a write
 * in progress is a temporary file renamed at the end), so every one listed is whole. Listing changes nothing.
 */
export async function listCheckpoints(runDir: string): Promise<{ step: number; path: string }[]> {
  const dir = join(runDir, CHECKPOINT_DIR);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const out: { step: number; path: string }[] = [];
  for (const f of names) {
    const m = /^step-(\d+)\.byol$/.exec(f);
    if (m) out.push({ step: Number(m[1]), path: join(dir, f) });
  }
  return out.sort((a, b) => b.step - a.step);
}

/**
 * Removes the temporary files that writers which are gone left in `dir` (a write killed mid-way). Only the holder of
 * the run's lock calls this: a temporary file whose writer still runs is never touched.
 */
export async function removeStaleTemporaries(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const f of names) {
    if (!f.endsWith('.tmp')) continue;
    const writer = temporaryWriter(f);
    // Names without a process id come from earlier byol versions (no lock then); their writers are gone by now.
    if (writer === null ? /\.[0-9a-f]{12}\.tmp$/.test(f) : writer !== process.pid && !processAlive(writer)) {
      await rm(join(dir, f), { force: true });
      removed.push(f);
    }
  }
  return removed;
}

/** Deletes all but the newest `keep` checkpoints (the run's owner only). */
export async function pruneCheckpoints(runDir: string, keep: number): Promise<void> {
  const all = await listCheckpoints(runDir);
  for (const c of all.slice(keep)) await rm(c.path, { force: true });
}

/** A checkpoint file, or a run folder (its newest checkpoint). Errors say what was expected. */
export async function resolveCheckpointPath(pathOrRun: string): Promise<string> {
  let s;
  try {
    s = await stat(pathOrRun);
  } catch {
    throw new ByolError('INVALID_OPTION', `${pathOrRun}: no such checkpoint file or run folder`, pathOrRun);
  }
  if (s.isFile()) return pathOrRun;
  const all = await listCheckpoints(pathOrRun);
  if (all.length === 0) {
    const live = await runLockHolder(pathOrRun);
    const why = live ? ` yet (process ${live.pid} is training it; its first checkpoint comes at the end of an epoch or of --checkpoint-every steps)` : '';
    throw new ByolError('INVALID_OPTION', `${pathOrRun}: a folder without checkpoints${why || ' (expected a run folder written by byol pretrain, or a .byol file)'}`, pathOrRun);
  }
  return all[0]!.path;
}

/**
 * A run config as an earlier byol wrote it, read as that version ran it: runs from before the image-folder options
 * pretrained on every image of a folder (holdout 0), decoded at 256 px, so that they resume on the same images.
 */
export function legacyConfig(config: PretrainConfig): PretrainConfig {
  return 'holdout' in config ? config : ({ ...(config as object), holdout: 0, imageSize: 256 } as PretrainConfig);
}

/** Reads a checkpoint's run metadata; errors name the file. */
export async function readRunCheckpoint(path: string): Promise<{ meta: CheckpointMeta; state: Awaited<ReturnType<typeof loadCheckpoint>>['state'] }> {
  const { state, meta } = await loadCheckpoint(path);
  const m = meta as Partial<CheckpointMeta> | null;
  if (m && typeof m.byolRun === 'number' && m.byolRun > 1) {
    throw new ByolError('INVALID_STATE', `${path}: written by a newer byol (run metadata version ${m.byolRun}; this version reads 1): upgrade byol to read it`, path);
  }
  if (!m || m.byolRun !== 1 || !m.config) throw new ByolError('INVALID_STATE', `${path}: a byol checkpoint without run metadata (not written by byol pretrain)`, path);
  return { meta: { ...(m as CheckpointMeta), config: resolvePretrainConfig(legacyConfig(m.config)) }, state };
}

/**
 * The newest complete checkpoint of a run folder (or the file itself), read. A run being trained may delete its
 * oldest checkpoint (--keep) between the listing and the read: then the listing is read again, so a reader never
 * fails because the writer moved on, and never disturbs it.
 */
export async function readNewestCheckpoint(pathOrRun: string): Promise<{ path: string } & Awaited<ReturnType<typeof readRunCheckpoint>>> {
  for (let attempt = 0; ; attempt++) {
    const path = await resolveCheckpointPath(pathOrRun);
    try {
      return { path, ...(await readRunCheckpoint(path)) };
    } catch (e) {
      const gone = e instanceof ByolError && /\(ENOENT\)/.test(e.message) && path !== pathOrRun;
      if (!gone || attempt >= 10) throw e;
    }
  }
}

/** The encoder model of a model-folder run: from the saved topology, else from the folder. */
export async function encoderModelFor(config: PretrainConfig, topology: unknown): Promise<tfl.LayersModel | null> {
  if (isBuiltinEncoder(config.encoder)) return null;
  const loaded = topology ? await tfl.models.modelFromJSON({ modelTopology: topology as never }) : await loadLayersModelDir(config.encoder);
  // Rebuilt from its config so that its batch-norm layers get the fused training pass; the weights come along.
  const model = cloneArchitecture(loaded);
  model.setWeights(loaded.getWeights());
  loaded.dispose();
  return model;
}

/**
 * A learner rebuilt from a checkpoint file or a run folder's newest checkpoint (its config, encoder and every
 * weight), e.g. to evaluate or export it. Errors name the file: a checkpoint whose weights do not fit the
 * architecture says so.
 */
export async function learnerFromCheckpoint(pathOrRun: string): Promise<{ learner: Byol; meta: CheckpointMeta; path: string }> {
  const { path, meta, state } = await readNewestCheckpoint(pathOrRun);
  const learner = new Byol(learnerOptions(meta.config, meta.stepsPerEpoch, await encoderModelFor(meta.config, meta.encoderTopology)));
  try {
    learner.setState(state);
  } catch (e) {
    learner.dispose();
    throw new ByolError('INVALID_STATE', `${path}: does not fit its architecture (${(e as Error).message})`, path);
  }
  return { learner, meta, path };
}

/** A randomly initialized learner of the same architecture as a run (the baseline of evaluations). */
export async function randomLearnerLike(meta: CheckpointMeta, seedOffset = 1000): Promise<Byol> {
  const encoder = await encoderModelFor(meta.config, meta.encoderTopology);
  if (encoder) {
    // A fresh initialization of the user's architecture.
    const fresh = cloneArchitecture(encoder);
    encoder.dispose();
    return new Byol(learnerOptions(meta.config, meta.stepsPerEpoch, fresh, seedOffset));
  }
  return new Byol(learnerOptions(meta.config, meta.stepsPerEpoch, null, seedOffset));
}

