/**
 * The view batches a run would train on next, as a file: for each step K its two views `views.K.1` and `views.K.2`
 * ([batch, H, W, C] float32, normalized), drawn exactly as `byol pretrain` draws them — the run's data order for that
 * epoch, the views generator from its saved state. The PyTorch companion trains on them (`--views FILE`), so a run it
 * continues sees the images and augmentations byol would have given it. Node only (files).
 */
import * as tf from '@tensorflow/tfjs-core';
import { batches, type ImageBatch } from '../data/source.js';
import { ByolError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { encodeSafetensors, type NamedArray } from '../io/safetensors.js';
import { ViewSampler } from '../views/views.js';
import { runViews, type PretrainConfig } from './config.js';
import { openRunData } from './data.js';

/** Largest views file written (it is built in memory): 8 GiB. */
export const MAX_VIEWS_BYTES = 8 * 2 ** 30;

export interface RunViewsArgs {
  readonly config: PretrainConfig;
  /** The first step to draw (0-based: the views of step `from` + 1), and how many. */
  readonly from: number;
  readonly steps: number;
  readonly stepsPerEpoch: number;
  readonly totalSteps: number;
  /** The views generator's state after step `from` − `drawnElsewhere`. */
  readonly viewRng: number;
  /** Steps the run took outside byol since `viewRng` was saved (their views' draws are made first). Default 0. */
  readonly drawnElsewhere?: number;
  readonly out: string;
  readonly log: (line: string) => void;
}

/** Writes the views of steps from+1 … from+steps (at most to the end of the run); returns the steps written. */
export async function writeRunViews(a: RunViewsArgs): Promise<{ steps: number; bytes: number }> {
  const { config } = a;
  const views = runViews(config);
  const last = Math.min(a.totalSteps, a.from + a.steps);
  const bytes = (last - a.from) * 2 * config.batchSize * views.size * views.size * views.channels * 4;
  if (bytes > MAX_VIEWS_BYTES) {
    const fit = Math.floor(MAX_VIEWS_BYTES / (bytes / (last - a.from)));
    throw new ByolError('INVALID_OPTION', `--steps ${a.steps}: the views of ${last - a.from} steps take ${(bytes / 2 ** 30).toFixed(1)} GiB, over ${MAX_VIEWS_BYTES / 2 ** 30} GiB; write at most ${fit} steps a file`, 'steps');
  }
  const data = await openRunData(config, views, null, a.log);
  const source = data.source;
  try {
    const spe = Math.floor(source.length / config.batchSize);
    if (spe !== a.stepsPerEpoch) throw new ByolError('INVALID_STATE', `the run had ${a.stepsPerEpoch} steps per epoch, ${source.name} now gives ${spe} (another dataset, or a folder that changed?)`, 'dataset');
    const sampler = new ViewSampler(views, { seed: config.seed + 1 });
    sampler.setRngState(a.viewRng);
    const [h, w] = source.imageShape;
    for (let k = 0; k < (a.drawnElsewhere ?? 0); k++) sampler.drawParams(config.batchSize, h, w);
    const tensors = new Map<string, NamedArray>();
    let step = a.from;
    while (step < last) {
      const epoch = Math.floor(step / spe);
      const order = batches(source, { batchSize: config.batchSize, seed: config.seed, epoch, dropLast: true, startBatch: step % spe });
      for (;;) {
        if (step >= last) break;
        const next: IteratorResult<ImageBatch, void> = await order.next();
        if (next.done) break;
        const batch = next.value;
        const x = tf.tensor4d(batch.images, [...batch.shape], 'int32');
        const [v1, v2] = sampler.views(x);
        x.dispose();
        for (const [i, v] of [[1, v1], [2, v2]] as const) {
          tensors.set(`views.${step}.${i}`, { shape: v.shape, data: v.dataSync() as Float32Array });
          v.dispose();
        }
        step++;
      }
      await order.return(undefined);
    }
    await writeFileAtomic(a.out, encodeSafetensors(tensors, { byol: JSON.stringify({ format: 'byol-views', from: a.from, to: step, viewRng: sampler.rngState, dataset: config.dataset }) }));
    return { steps: step - a.from, bytes };
  } finally {
    await Promise.all([source.close(), data.knn?.bank.close(), data.knn?.test.close()]);
  }
}
