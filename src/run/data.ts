/**
 * The data of a run: the images it pretrains on and the labelled sets its kNN evaluations use — for image folders
 * a held-out part when labels exist, or a line saying why there is no kNN.
 */
import { imageFolder, splitFolders, type FolderOptions, type FolderSource } from '../data/folder.js';
import type { ImageSource } from '../data/source.js';
import { openDataset, parseDatasetSpec, type DatasetSpec } from '../data/spec.js';
import type { ViewsConfig } from '../views/options.js';
import type { PretrainConfig } from './config.js';

/** How a run's image folder is read: decoded size, fit, channels, what to do with a bad file, the hold-out share. */
export function folderOptionsOf(config: PretrainConfig, views: ViewsConfig, forEvaluation = false): FolderOptions {
  // Evaluation decodes straight to the encoder's input size (a centre crop with `cover`).
  const size = forEvaluation ? views.size : (config.imageSize ?? (config.preset === 'imagenet' ? 256 : views.size));
  return {
    size,
    fit: config.fit,
    channels: views.channels === 1 ? 1 : 3,
    onError: config.skipBad ? 'skip' : 'fail',
    ...(config.holdout > 0 ? { holdout: config.holdout } : {}),
  };
}

/** The first `limit` images of a source. */
export function limited(source: ImageSource, limit: number | null): ImageSource {
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

/** Labelled train and test sets for evaluation. */
export interface EvalSets {
  readonly bank: ImageSource;
  readonly test: ImageSource;
}

/**
 * The train and test parts of a dataset for evaluation: the `train` and `test` splits; for an image folder its
 * train/ and val/ sub-folders or its held-out part (`config.holdout`, else 0.1), decoded at the encoder's size.
 */
export async function openEvalSets(spec: DatasetSpec, config: PretrainConfig, views: ViewsConfig): Promise<EvalSets> {
  if (spec.kind !== 'folder') {
    const bank = await openDataset({ ...spec, split: 'train' });
    try {
      return { bank, test: await openDataset({ ...spec, split: 'test' }) };
    } catch (e) {
      await bank.close();
      throw e;
    }
  }
  const options = { ...folderOptionsOf(config, views, true), holdout: config.holdout > 0 ? config.holdout : 0.1 };
  const bank = await imageFolder(spec.path!, { ...options, split: 'train' });
  return { bank, test: await imageFolder(spec.path!, { ...options, split: 'test' }) };
}

export interface RunData {
  /** The images pretraining reads (after `limit`). */
  readonly source: ImageSource;
  /** The dataset spec pretraining reads: the run's, with the part a labelled folder trains on (`@train`). */
  readonly dataset: string;
  /** For an image folder: its files, in index order (kept with the run, so that a resume reads the same files). */
  readonly files: readonly string[] | null;
  /** kNN sets, or null with `knnNote` saying why there are none. */
  readonly knn: EvalSets | null;
  readonly knnNote: string;
}

/**
 * Opens what a run reads. A labelled image folder without a split is pretrained on its `train` part and evaluated on
 * its held-out `test` part (or train/ and val/ sub-folders); `files` (on resume) fixes the folder's files to the
 * run's. Nothing is written.
 */
export async function openRunData(config: PretrainConfig, views: ViewsConfig, files: readonly string[] | null, log: (line: string) => void): Promise<RunData> {
  const spec = parseDatasetSpec(config.dataset);
  if (spec.kind === 'folder') {
    const options = { ...folderOptionsOf(config, views), onSkip: (f: { path: string; reason: string }) => log(`skipped ${f.path}: ${f.reason}`) };
    const parts = await splitFolders(spec.path!);
    let split = spec.split === 'unlabeled' ? null : spec.split;
    if (split === null && parts) split = 'train';
    let source: FolderSource = await imageFolder(spec.path!, { ...options, split, ...(files ? { files } : {}) });
    if (split === null && !files && source.classes && config.holdout > 0) {
      // Labelled: hold a part out of pretraining for kNN.
      split = 'train';
      source = await imageFolder(spec.path!, { ...options, split });
    }
    const dataset = split === null ? config.dataset : `folder:${spec.path}@${split}`;
    let knn: EvalSets | null = null;
    let knnNote: string;
    if (split === 'train' && source.classes) {
      knn = await openEvalSets({ ...spec, split: null }, config, views);
      knnNote = parts
        ? `kNN: ${parts.test} (${knn.test.length} images) against ${parts.train}`
        : `kNN: ${knn.test.length} images held out of pretraining (${Math.round(100 * config.holdout)} %, chosen by a hash of their paths)`;
    } else {
      knnNote = !source.classes
        ? `no kNN: ${spec.path} has no labels (put the images in class sub-folders to get one)`
        : split === null
          ? 'no kNN: --holdout 0 pretrains on every image, so none is held out'
          : `no kNN: pretraining on the ${split} part`;
    }
    return { source: limited(source, config.limit), dataset, files: source.files, knn, knnNote };
  }
  const source = limited(await openDataset(spec), config.limit);
  let knn: EvalSets | null = null;
  let knnNote = '';
  try {
    knn = await openEvalSets(spec, config, views);
    if (!knn.bank.classes) {
      await Promise.all([knn.bank.close(), knn.test.close()]);
      knn = null;
      knnNote = `no kNN: ${spec.kind} has no labels`;
    }
  } catch (e) {
    knnNote = `no kNN: ${(e as Error).message.split('\n')[0]}`;
  }
  return { source, dataset: config.dataset, files: null, knn, knnNote };
}
