/**
 * Imports a ResNet backbone from a PyTorch file — torchvision's naming (`conv1.weight`, `layer1.0.bn1.running_mean`,
 * …), with or without a prefix (`backbone.` of solo-learn, `module.` of DataParallel, …), lightly's `nn.Sequential`
 * numbering (`backbone.4.0.conv1.weight`), a Lightning `.ckpt`'s `state_dict` — into byol's ResNet with PyTorch's
 * padding, so that it gives PyTorch's features. Node only (files).
 */
import type * as tfl from '@tensorflow/tfjs-layers';
import { ByolError } from '../errors.js';
import { open } from 'node:fs/promises';
import { readHaikuCheckpoint, type NpArray } from '../io/haiku-file.js';
import { flattenTensors, plainData, readTorchFile, TorchTensor } from '../io/torch-file.js';
import { resnet, type ResNetDepth } from '../nets/resnet.js';
import { loadTorchState, torchKeysOf, type TorchArray } from '../nets/torch-weights.js';

export interface TorchImportOptions {
  /** The key prefix of the backbone (e.g. `backbone.`); default: found (the online network's, where there are several). */
  readonly prefix?: string;
  /** Side of the input images the model takes. Default 224 (ImageNet stem) or 32 (CIFAR stem). */
  readonly inputSize?: number;
  /**
   * Zero padding of a CIFAR stem (3×3/1 conv1), which its weights do not tell: 1 in torchvision-style CIFAR ResNets
   * (lightly, SimCLR's), 2 in solo-learn's. Default: read from a solo-learn checkpoint's hyper-parameters, else 1
   * (said in `notes`).
   */
  readonly stemPadding?: number;
}

export interface TorchImport {
  readonly model: tfl.LayersModel;
  /** byol's name of the architecture, e.g. `resnet18`, `resnet50-cifar`, with `width` where not 1. */
  readonly encoder: string;
  readonly depth: ResNetDepth;
  readonly stem: 'imagenet' | 'cifar';
  readonly width: number;
  /** `torch` for PyTorch files, `same` (TensorFlow's) for the official checkpoints. */
  readonly padding: 'same' | 'torch';
  readonly format: 'pytorch' | 'byol-official';
  readonly prefix: string;
  /** Other backbone prefixes the file holds (a target or momentum network, say). */
  readonly otherPrefixes: readonly string[];
  readonly mapped: readonly string[];
  readonly missing: readonly string[];
  /** Keys under the prefix that the encoder does not use (a classifier, counters). */
  readonly unexpected: readonly string[];
  /** A CIFAR stem's zero padding (1 unless the file or the caller says otherwise); null for an ImageNet stem. */
  readonly stemPadding: number | null;
  /** The input normalization the file's training used, where it says (solo-learn's CIFAR runs); else null. */
  readonly normalization: { readonly mean: number[]; readonly std: number[]; readonly source: string } | null;
  /** What was inferred rather than read, for the user. */
  readonly notes: readonly string[];
}

/** solo-learn's CIFAR-10/100 normalization (solo/data/classification_dataloader.py, both datasets). */
const SOLO_CIFAR = { mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.243, 0.261] };

/** What a checkpoint's hyper-parameters say of a CIFAR stem: solo-learn's config (OmegaConf or plain), if any. */
function soloLearnCifar(obj: unknown): { dataset: string } | null | 'solo-unknown' {
  if (!(obj instanceof Map)) return null;
  const hp = plainData(obj.get('hyper_parameters'));
  if (!(hp instanceof Map)) return null;
  const cfg = hp.get('cfg') instanceof Map ? (hp.get('cfg') as Map<unknown, unknown>) : hp;
  const data = cfg.get('data');
  const dataset = data instanceof Map ? data.get('dataset') : undefined;
  // solo-learn 1.x: cfg.data.dataset; its first versions: a `cifar` flag among the hyper-parameters.
  if (typeof dataset === 'string') return /^cifar(10|100)$/.test(dataset) ? { dataset } : null;
  if (hp.get('cifar') === true) return { dataset: 'cifar' };
  if (cfg.has('method') && cfg.has('backbone')) return 'solo-unknown';
  return null;
}

const DEPTHS: readonly [ResNetDepth, string, boolean][] = [
  [18, '2,2,2,2', false],
  [34, '3,4,6,3', false],
  [50, '3,4,6,3', true],
  [101, '3,4,23,3', true],
  [152, '3,8,36,3', true],
  [200, '3,24,36,3', true],
];

/** lightly's backbones are torchvision's children in an nn.Sequential: 0 conv1, 1 bn1, 4–7 layer1–4. */
const SEQUENTIAL: Readonly<Record<string, string>> = { '0': 'conv1', '1': 'bn1', '4': 'layer1', '5': 'layer2', '6': 'layer3', '7': 'layer4' };

/** The state dict in a checkpoint object: itself, or under state_dict / model / model_state_dict / net / backbone. */
function stateOf(obj: unknown, file: string): Map<string, TorchTensor> {
  if (obj instanceof Map) {
    for (const k of ['state_dict', 'model', 'model_state_dict', 'net', 'backbone', 'online_network']) {
      const inner = obj.get(k);
      if (inner instanceof Map && [...flattenTensors(inner).keys()].some((key) => key.endsWith('conv1.weight'))) return flattenTensors(inner);
    }
    const all = flattenTensors(obj);
    if (all.size > 0) return all;
  }
  throw new ByolError('INVALID_DATA', `${file}: no tensors found (expected a state dict, or a checkpoint holding one under state_dict or model)`, file);
}

/** Renames lightly's numbered children to torchvision's names, under every prefix that has them. */
function normalizeSequential(state: Map<string, TorchTensor>): Map<string, TorchTensor> {
  const numbered = [...state.keys()].filter((k) => /(^|\.)4\.0\.conv1\.weight$/.test(k)).map((k) => k.slice(0, -'4.0.conv1.weight'.length));
  if (numbered.length === 0) return state;
  const out = new Map<string, TorchTensor>();
  for (const [k, v] of state) {
    const p = numbered.find((q) => k.startsWith(q) && /^\d\./.test(k.slice(q.length)));
    const child = p === undefined ? undefined : SEQUENTIAL[k.slice(p.length, p.length + 1)];
    out.set(p !== undefined && child ? `${p}${child}${k.slice(p.length + 1)}` : k, v);
  }
  return out;
}

/** The backbone prefixes of a state dict: what comes before every `layer1.0.conv1.weight`. */
function prefixesOf(state: Map<string, TorchTensor>): string[] {
  return [...state.keys()].filter((k) => k.endsWith('layer1.0.conv1.weight')).map((k) => k.slice(0, -'layer1.0.conv1.weight'.length));
}

/** The online network's prefix among several (BYOL checkpoints hold a target or momentum copy too). */
function preferredPrefix(prefixes: readonly string[]): string | undefined {
  const rank = (p: string) => (/(target|momentum|teacher|ema)/i.test(p) ? 2 : /(online|backbone|encoder|student)/i.test(p) ? 0 : 1);
  return [...prefixes].sort((a, b) => rank(a) - rank(b) || a.length - b.length)[0];
}

/**
 * Reads a PyTorch file and builds byol's ResNet with its backbone's weights (architecture from the keys and shapes:
 * depth, stem, width). Errors name the file and what was expected; a shape that does not fit names the key.
 */
export async function importTorchResnet(file: string, options: TorchImportOptions = {}): Promise<TorchImport> {
  const fail = (why: string) => new ByolError('INVALID_DATA', `${file}: ${why}`, file);
  const root = await readTorchFile(file);
  const state = normalizeSequential(stateOf(root, file));
  const prefixes = prefixesOf(state);
  if (prefixes.length === 0) {
    const sample = [...state.keys()].slice(0, 4).join(', ');
    throw fail(`no ResNet backbone found (no key ends in layer1.0.conv1.weight; keys start: ${sample})`);
  }
  let prefix = options.prefix;
  if (prefix !== undefined) {
    if (!prefixes.includes(prefix)) throw new ByolError('INVALID_OPTION', `--prefix ${JSON.stringify(prefix)} names no backbone in ${file}; it has ${prefixes.map((p) => JSON.stringify(p)).join(', ')}`, 'prefix');
  } else prefix = preferredPrefix(prefixes)!;
  const get = (k: string) => state.get(prefix + k);
  const conv1 = get('conv1.weight');
  if (!conv1 || conv1.shape.length !== 4) throw fail(`${prefix}conv1.weight is missing or not a convolution kernel`);
  const stem = conv1.shape[2] === 7 ? 'imagenet' : conv1.shape[2] === 3 ? 'cifar' : null;
  if (!stem) throw fail(`${prefix}conv1.weight has a ${conv1.shape[2]}×${conv1.shape[3]} kernel; a ResNet stem has 7×7 (ImageNet) or 3×3 (CIFAR)`);
  const width = conv1.shape[0]! / 64;
  if (!Number.isInteger(width) || width < 1) throw fail(`${prefix}conv1.weight has ${conv1.shape[0]} filters, not a multiple of 64`);
  const bottleneck = get('layer1.0.conv3.weight') !== undefined;
  // torchvision's wide ResNets (wide_resnet50_2, …) widen only a bottleneck's inner convolutions (width_per_group
  // 128 instead of 64), where byol's width multiplier (the paper's ResNet-50 (2×)) widens every layer and the stem.
  const inner = get('layer1.0.conv1.weight')?.shape[0];
  if (bottleneck && inner !== undefined && inner !== conv1.shape[0]) {
    throw fail(
      `a wide ResNet in torchvision's sense (width_per_group ${(inner / conv1.shape[0]!) * 64}: layer1.0.conv1 has ${inner} filters for a stem of ${conv1.shape[0]}), ` +
        'which byol does not build: its width multiplier widens every layer, the stem too (the paper\'s ResNet-50 (2×)); import a ResNet with width_per_group 64',
    );
  }
  const blocks = [1, 2, 3, 4].map((l) => {
    let n = 0;
    while (get(`layer${l}.${n}.conv1.weight`)) n++;
    return n;
  });
  const depth = DEPTHS.find(([, b, bot]) => b === blocks.join(',') && bot === bottleneck)?.[0];
  if (!depth) throw fail(`its backbone has ${blocks.join('-')} ${bottleneck ? 'bottleneck' : 'basic'} blocks, not a ResNet-18/34/50/101/152/200`);
  const backbone = new Map<string, TorchArray>();
  for (const [k, v] of state) if (k.startsWith(prefix)) backbone.set(k.slice(prefix.length), v);
  // A CIFAR stem's padding is not in its weights: solo-learn pads 2, torchvision-style CIFAR ResNets 1.
  const notes: string[] = [];
  let stemPadding: number | null = null;
  let normalization: TorchImport['normalization'] = null;
  if (stem === 'imagenet' && options.stemPadding !== undefined) {
    throw new ByolError('INVALID_OPTION', `--stem-padding is for a CIFAR stem (3×3/1); ${file} has an ImageNet stem (7×7/2)`, 'stem-padding');
  }
  if (stem === 'cifar') {
    const solo = soloLearnCifar(root);
    if (options.stemPadding !== undefined) stemPadding = options.stemPadding;
    else if (solo === 'solo-unknown') {
      throw new ByolError('INVALID_OPTION', `${file}: a solo-learn checkpoint with a CIFAR stem whose config does not name its dataset, so the stem's padding (2 for solo-learn's CIFAR runs) cannot be known; give --stem-padding 2 (or 1)`, 'stem-padding');
    } else if (solo) {
      stemPadding = 2;
      normalization = { ...SOLO_CIFAR, source: `solo-learn's CIFAR normalization (its config's dataset: ${solo.dataset})` };
      notes.push(`stem: padding 2, as solo-learn's CIFAR ResNets (its config's dataset: ${solo.dataset})`);
    } else {
      stemPadding = 1;
      notes.push('stem: a 3×3 CIFAR stem whose padding the file does not say; taken as 1 (torchvision-style, lightly); solo-learn\'s pad 2: --stem-padding 2');
    }
  }
  const built = buildResnet(file, backbone, { depth, stem, width, channels: conv1.shape[1]!, padding: 'torch', prefix, otherPrefixes: prefixes.filter((p) => p !== prefix), inputSize: options.inputSize, stemPadding });
  return { ...built, stemPadding, normalization, notes };
}

/** Builds byol's ResNet of the given architecture and loads a backbone state (PyTorch names and layouts) into it. */
function buildResnet(
  file: string,
  backbone: Map<string, TorchArray>,
  a: { depth: ResNetDepth; stem: 'imagenet' | 'cifar'; width: number; channels: number; padding: 'same' | 'torch'; prefix: string; otherPrefixes: string[]; inputSize: number | undefined; stemPadding?: number | null },
): TorchImport {
  const { depth, stem, width } = a;
  const size = a.inputSize ?? (stem === 'imagenet' ? 224 : 32);
  const model = resnet({ depth, stem, width, inputShape: [size, size, a.channels], padding: a.padding, ...(a.stemPadding != null ? { stemPadding: a.stemPadding } : {}), name: `resnet${depth}${stem === 'cifar' ? '_cifar' : ''}` });
  let report;
  try {
    report = loadTorchState(model, backbone, file);
  } catch (e) {
    model.dispose();
    throw e;
  }
  const used = new Set(torchKeysOf(model));
  const unexpected = [...backbone.keys()].filter((k) => !used.has(k) && !k.endsWith('num_batches_tracked'));
  return {
    model,
    encoder: `resnet${depth}${stem === 'cifar' ? '-cifar' : ''}`,
    depth,
    stem,
    width,
    padding: a.padding,
    format: a.padding === 'torch' ? 'pytorch' : 'byol-official',
    prefix: a.prefix,
    otherPrefixes: a.otherPrefixes,
    mapped: report.mapped,
    missing: report.missing,
    unexpected,
    stemPadding: stem === 'cifar' ? (a.stemPadding ?? 1) : null,
    normalization: null,
    notes: [],
  };
}

/** Haiku's module names in the official code's ResNet (byol/utils/networks.py, Haiku's BlockV1) → PyTorch's. */
function haikuToTorch(module: string, net: string): string | null {
  if (!module.startsWith(`${net}/~/`)) return null;
  const rest = module.slice(net.length + 3);
  if (rest === 'initial_conv') return 'conv1';
  if (rest === 'initial_batchnorm') return 'bn1';
  const shortcut = /^block_group_(\d+)\/~\/block_(\d+)\/~\/shortcut_(conv|batchnorm)$/.exec(rest);
  if (shortcut) return `layer${Number(shortcut[1]) + 1}.${shortcut[2]}.downsample.${shortcut[3] === 'conv' ? 0 : 1}`;
  const inner = /^block_group_(\d+)\/~\/block_(\d+)\/~\/(conv|batchnorm)_(\d+)$/.exec(rest);
  if (inner) return `layer${Number(inner[1]) + 1}.${inner[2]}.${inner[3] === 'conv' ? 'conv' : 'bn'}${Number(inner[4]) + 1}`;
  return null;
}

/**
 * Imports the online (or target) encoder of an official BYOL checkpoint (deepmind-research's pretrain_res50x1.pkl,
 * pretrain_res200x2.pkl): Haiku's ResNet with TensorFlow's "SAME" padding, which byol's ResNets share. Batch-norm
 * statistics are the moving averages' debiased `average`.
 */
export async function importOfficialResnet(file: string, options: { network?: 'online' | 'target'; inputSize?: number } = {}): Promise<TorchImport> {
  const fail = (why: string) => new ByolError('INVALID_DATA', `${file}: ${why}`, file);
  const ckpt = await readHaikuCheckpoint(file, options.network ?? 'online');
  const conv = [...ckpt.params.keys()].find((k) => k.endsWith('/~/initial_conv'));
  if (!conv) throw fail(`no ResNet found (no Haiku module ends in /~/initial_conv; modules: ${[...ckpt.params.keys()].slice(0, 3).join(', ')})`);
  const net = conv.slice(0, -'/~/initial_conv'.length);
  const backbone = new Map<string, TorchArray>();
  const unused: string[] = [];
  const vector = (a: NpArray) => ({ shape: [a.data.length], data: a.data });
  for (const [module, params] of ckpt.params) {
    const name = haikuToTorch(module, net);
    if (!name) {
      unused.push(module);
      continue;
    }
    const w = params.get('w');
    if (w) {
      const [kh, kw, ci, co] = w.shape as [number, number, number, number];
      backbone.set(`${name}.weight`, { shape: [co, ci, kh, kw], data: hwioToOihw(w.data, w.shape) });
    }
    const scale = params.get('scale');
    const offset = params.get('offset');
    if (scale) backbone.set(`${name}.weight`, vector(scale));
    if (offset) backbone.set(`${name}.bias`, vector(offset));
    const mean = ckpt.state.get(`${module}/~/mean_ema`)?.get('average');
    const variance = ckpt.state.get(`${module}/~/var_ema`)?.get('average');
    if (mean) backbone.set(`${name}.running_mean`, vector(mean));
    if (variance) backbone.set(`${name}.running_var`, vector(variance));
  }
  const conv1 = backbone.get('conv1.weight')!;
  const blocks = [1, 2, 3, 4].map((l) => {
    let n = 0;
    while (backbone.has(`layer${l}.${n}.conv1.weight`)) n++;
    return n;
  });
  const bottleneck = backbone.has('layer1.0.conv3.weight');
  const depth = DEPTHS.find(([, b, bot]) => b === blocks.join(',') && bot === bottleneck)?.[0];
  if (!depth) throw fail(`its ResNet has ${blocks.join('-')} ${bottleneck ? 'bottleneck' : 'basic'} blocks, not a ResNet-18/34/50/101/152/200`);
  if (!bottleneck && backbone.has('layer1.0.downsample.0.weight')) {
    throw fail('its first block group has a projection shortcut without a change of shape (use_projection), which byol\'s ResNet-18/34 lack');
  }
  const imported = buildResnet(file, backbone, { depth, stem: 'imagenet', width: conv1.shape[0]! / 64, channels: conv1.shape[1]!, padding: 'same', prefix: `${net}/~/`, otherPrefixes: [], inputSize: options.inputSize });
  return { ...imported, unexpected: [...imported.unexpected, ...unused] };
}

/** HWIO [h, w, i, o] → OIHW. */
function hwioToOihw(v: Float32Array, shape: readonly number[]): Float32Array {
  const [h, w, i, o] = shape as [number, number, number, number];
  const out = new Float32Array(v.length);
  for (let a = 0; a < h; a++) for (let b = 0; b < w; b++) for (let c = 0; c < i; c++) for (let d = 0; d < o; d++) out[((d * i + c) * h + a) * w + b] = v[((a * w + b) * i + c) * o + d]!;
  return out;
}

/** A PyTorch file or an official BYOL (Haiku) pickle, told apart by their first bytes. */
export async function importResnet(file: string, options: TorchImportOptions & { network?: 'online' | 'target' } = {}): Promise<TorchImport> {
  let head: Buffer;
  try {
    const h = await open(file, 'r');
    try {
      head = Buffer.alloc(4);
      await h.read(head, 0, 4, 0);
    } finally {
      await h.close();
    }
  } catch (e) {
    throw new ByolError('INVALID_DATA', `${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, file);
  }
  // A pickle (the official checkpoints) starts with PROTO 2; torch.save files are ZIP archives ("PK"), and those of
  // PyTorch before 1.6 a pickled magic number (PROTO 2, LONG1 of 10 bytes), which the torch reader names.
  if (head[0] === 0x80 && head[1] === 2 && !(head[2] === 0x8a && head[3] === 0x0a)) {
    return importOfficialResnet(file, { ...(options.network ? { network: options.network } : {}), ...(options.inputSize ? { inputSize: options.inputSize } : {}) });
  }
  return importTorchResnet(file, options);
}
