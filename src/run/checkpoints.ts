import { existsSync } from 'node:fs';
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import * as tfl from '@tensorflow/tfjs-layers';
import { Byol } from '../byol/learner.js';
import { ByolError } from '../errors.js';
import { loadCheckpoint } from '../io/checkpoint.js';
import { loadLayersModelDir } from '../io/model-dir.js';
import { cloneArchitecture } from '../nets/encoder.js';
import { isBuiltinEncoder, learnerOptions, resolvePretrainConfig, type PretrainConfig } from './config.js';

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
  readonly savedAt: string;
}

export const CHECKPOINT_DIR = 'checkpoints';

export function checkpointName(step: number): string {
  return `step-${String(step).padStart(8, '0')}.byol`;
}

/** The run's checkpoints, newest first (by step), with leftover temporary files removed. */
export async function listCheckpoints(runDir: string): Promise<{ step: number; path: string }[]> {
  const dir = join(runDir, CHECKPOINT_DIR);
  if (!existsSync(dir)) return [];
  const out: { step: number; path: string }[] = [];
  for (const f of await readdir(dir)) {
    // A write that was killed leaves its temporary file; the checkpoint it was replacing is intact.
    if (f.endsWith('.tmp')) await rm(join(dir, f), { force: true });
    const m = /^step-(\d+)\.byol$/.exec(f);
    if (m) out.push({ step: Number(m[1]), path: join(dir, f) });
  }
  return out.sort((a, b) => b.step - a.step);
}

/** Deletes all but the newest `keep` checkpoints. */
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
  if (all.length === 0) throw new ByolError('INVALID_OPTION', `${pathOrRun}: a folder without checkpoints (expected a run folder written by byol pretrain, or a .byol file)`, pathOrRun);
  return all[0]!.path;
}

/** Reads a checkpoint's run metadata; errors name the file. */
export async function readRunCheckpoint(path: string): Promise<{ meta: CheckpointMeta; state: Awaited<ReturnType<typeof loadCheckpoint>>['state'] }> {
  const { state, meta } = await loadCheckpoint(path);
  const m = meta as Partial<CheckpointMeta> | null;
  if (!m || m.byolRun !== 1 || !m.config) throw new ByolError('INVALID_STATE', `${path}: a byol checkpoint without run metadata (not written by byol pretrain)`, path);
  return { meta: { ...(m as CheckpointMeta), config: resolvePretrainConfig(m.config) }, state };
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
 * A learner rebuilt from a checkpoint (its config, encoder and every weight), e.g. to evaluate or export it.
 * Errors name the file: a checkpoint whose weights do not fit the architecture says so.
 */
export async function learnerFromCheckpoint(path: string): Promise<{ learner: Byol; meta: CheckpointMeta }> {
  const { meta, state } = await readRunCheckpoint(path);
  const learner = new Byol(learnerOptions(meta.config, meta.stepsPerEpoch, await encoderModelFor(meta.config, meta.encoderTopology)));
  try {
    learner.setState(state);
  } catch (e) {
    learner.dispose();
    throw new ByolError('INVALID_STATE', `${path}: does not fit its architecture (${(e as Error).message})`, path);
  }
  return { learner, meta };
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

