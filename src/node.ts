/**
 * byol for Node: everything in the main entry, plus backend set-up and file helpers that need Node.
 */
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { ByolError } from './errors.js';
import { installWasmFastPaths, silenceCpuBanner } from './backend.js';
import { nativeLoadError, registerNativeBackend } from './native/backend.js';

export * from './index.js';
export { parseIdx, type IdxArray } from './data/idx.js';
export { readIdxFile, findOfflineGreyDataset, DEBIAN_FASHION_MNIST, type IdxDatasetFiles } from './data/files.js';
export { encodePng, crc32 } from './io/png.js';
export { writeFileAtomic } from './io/atomic.js';

export type NodeBackendName = 'native' | 'cpu' | 'wasm';

const require = createRequire(import.meta.url);

/**
 * Selects the tfjs backend. `native` (byol's oneDNN addon; needs the addon built against libdnnl) runs the
 * convolutions and matrix products natively on every core. `wasm` (XNNPACK, SIMD, one thread under Node) is several
 * times faster than `cpu` on dense layers but lacks the Conv2DBackpropFilter kernel, so it cannot train
 * convolutional encoders; `cpu` runs everything, slowly. `threads` (native only) defaults to the machine's cores.
 */
export async function useBackend(name: NodeBackendName, threads = cpus().length): Promise<void> {
  if (name === 'native') {
    if (!registerNativeBackend(threads)) {
      throw new ByolError('INVALID_OPTION', `option \`backend\`: the native addon is not built (${nativeLoadError()}); ${NATIVE_HINT}`, 'backend');
    }
  } else if (name === 'wasm') {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    const dir = join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + '/';
    wasm.setWasmPaths(dir);
  } else if (name !== 'cpu') {
    throw new ByolError('INVALID_OPTION', `option \`backend\` must be "native", "cpu" or "wasm"; got ${JSON.stringify(name)}`, 'backend');
  }
  if (!(await tf.setBackend(name))) {
    throw new ByolError('INVALID_OPTION', `option \`backend\`: the ${name} backend failed to start`, 'backend');
  }
  if (name === 'wasm') installWasmFastPaths();
  silenceCpuBanner();
}

export { batches, epochOrder, batchCount, checkRecordSize, type ImageBatch, type ImageSource, type BatchOptions } from './data/source.js';
export { cifar10, cifar100, stl10, CIFAR10_CLASSES, type Split, type Stl10Split, type BinaryDatasetOptions } from './data/binary.js';
export { idxSource, FASHION_MNIST_CLASSES } from './data/idx-source.js';
export { imageFolder, isHeldOut, splitFolders, IMAGE_EXTENSIONS, type FolderOptions, type FolderSource, type SkippedFile } from './data/folder.js';
export { download, downloadDataset, extractTarGz, DATASET_FILES, type DownloadOptions, type DatasetFile } from './data/download.js';
export { parseDatasetSpec, openDataset, DATASET_KINDS, type DatasetSpec, type DatasetKind, type DatasetSplit, type OpenDatasetOptions } from './data/spec.js';

/**
 * The command that builds the native addon for the byol installed at `packageRoot`: `npm rebuild byol` where byol is
 * a dependency (under node_modules), else — a git clone, where `npm rebuild` builds only the dependencies —
 * `npm run install` in that folder (byol's own install script).
 */
export function nativeRebuildCommand(packageRoot: string): string {
  return packageRoot.split(/[\\/]/).includes('node_modules') ? 'npm rebuild byol' : `npm run install (in ${packageRoot})`;
}

/** This byol's folder: dist/src/node.js lies two folders below it. */
const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** How to get native speed, for messages. */
export const NATIVE_HINT =
  'install oneDNN (Debian/Ubuntu: apt-get install libdnnl-dev; Homebrew: brew install onednn; conda: conda install -c conda-forge onednn) and run ' +
  nativeRebuildCommand(PACKAGE_ROOT);

/**
 * The fastest backend available: `native` when the addon is built, else `wasm` with a one-line notice on stderr.
 */
export async function useFastestBackend(log: (line: string) => void = (l) => console.error(l)): Promise<NodeBackendName> {
  if (registerNativeBackend(cpus().length)) {
    await useBackend('native');
    return 'native';
  }
  log(`byol: native backend unavailable (${nativeLoadError()}), using wasm; for native speed ${NATIVE_HINT}`);
  await useBackend('wasm');
  return 'wasm';
}
export { registerNativeBackend, loadNativeAddon, nativeLoadError, NativeBackend, releaseNativeMemory, setNativePrecision, type NativePrecision, type NativePrecisionOptions } from './native/backend.js';
export { saveCheckpoint, loadCheckpoint } from './io/checkpoint.js';
export { saveLayersModelDir, loadLayersModelDir, type SaveModelOptions } from './io/model-dir.js';
export { encodeNpy } from './io/npy.js';
export { PRETRAIN_DEFAULTS, RESUME_CHANGES, resolvePretrainConfig, learnerOptions, runViews, describeBackend, type PretrainConfig, type ResumeChange, type BackendRecord } from './run/config.js';
export { pretrain, knnOf, readRunRecord, lastBackendOf, RUN_FILES, type PretrainArgs, type PretrainHooks, type PretrainResult, type MetricsRecord, type RunRecord, type ResumeRecord } from './run/pretrain.js';
export { learnerFromCheckpoint, randomLearnerLike, listCheckpoints, readNewestCheckpoint, resolveCheckpointPath, readRunCheckpoint, type CheckpointMeta } from './run/checkpoints.js';
export { RunLock, runLockHolder, LOCK_FILE, type LockInfo } from './run/lock.js';
export { openRunData, openEvalSets, folderOptionsOf, type RunData, type EvalSets } from './run/data.js';
export { OutputDir, claimOutputFile, outputKindOf, OUTPUT_MARKER, type OutputKind, type ClaimOptions } from './io/output.js';
export { ensureDir } from './io/fs.js';
export { encodeSource, evalInputOf, featureTensor, measureFeatures, type EncodedSet, type EvalInput, type LabelledFeatures } from './run/features.js';
export { writePlots, readMetrics, lineChartSvg, chartSvg, svgRasterizer, runSeries, tickStep, niceTicks, formatTick, type Series, type ChartLine } from './run/plot.js';
export {
  ablate, gridVariants, summarize, judgeClaims, compare, pairedDifference, meanStd, ABLATION_GRIDS, ABLATE_DEFAULTS, RANDOM_ID,
  type AblationGrid, type AblationSpec, type AblateArgs, type AblateHooks, type AblateResult, type Variant, type RunResult, type Row, type Claim, type Verdict,
} from './run/ablate.js';
export { buildServer, MicroBatcher, ServeError, openApi, type ServeOptions } from './serve/server.js';
export { IndexStore, loadEmbeddings, decodeNpy, encodeSnapshot, decodeSnapshot } from './serve/store.js';
