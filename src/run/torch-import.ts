/**
 * Imports a ResNet backbone from a PyTorch file — torchvision's naming (`conv1.weight`, `layer1.0.bn1.running_mean`,
 * …), with or without a prefix (`backbone.` of solo-learn, `module.` of DataParallel, …), lightly's `nn.Sequential`
 * numbering (`backbone.4.0.conv1.weight`), a Lightning `.ckpt`'s `state_dict` — into byol's ResNet with PyTorch's
 * padding, so that it gives PyTorch's features. Node only (files).
 */
import type * as tfl from '@tensorflow/tfjs-layers';
import { ByolError } from '../errors.js';
import { flattenTensors, readTorchFile, TorchTensor } from '../io/torch-file.js';
import { resnet, type ResNetDepth } from '../nets/resnet.js';
import { loadTorchState, torchKeysOf, type TorchArray } from '../nets/torch-weights.js';

export interface TorchImportOptions {
  /** The key prefix of the backbone (e.g. `backbone.`); default: found (the online network's, where there are several). */
  readonly prefix?: string;
  /** Side of the input images the model takes. Default 224 (ImageNet stem) or 32 (CIFAR stem). */
  readonly inputSize?: number;
}

export interface TorchImport {
  readonly model: tfl.LayersModel;
  /** byol's name of the architecture, e.g. `resnet18`, `resnet50-cifar`, with `width` where not 1. */
  readonly encoder: string;
  readonly depth: ResNetDepth;
  readonly stem: 'imagenet' | 'cifar';
  readonly width: number;
  readonly prefix: string;
  /** Other backbone prefixes the file holds (a target or momentum network, say). */
  readonly otherPrefixes: readonly string[];
  readonly mapped: readonly string[];
  readonly missing: readonly string[];
  /** Keys under the prefix that the encoder does not use (a classifier, counters). */
  readonly unexpected: readonly string[];
}

const DEPTHS: readonly [ResNetDepth, string, boolean][] = [
  [18, '2,2,2,2', false],
  [34, '3,4,6,3', false],
  [50, '3,4,6,3', true],
  [101, '3,4,23,3', true],
  [152, '3,8,36,3', true],
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
  const state = normalizeSequential(stateOf(await readTorchFile(file), file));
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
  const blocks = [1, 2, 3, 4].map((l) => {
    let n = 0;
    while (get(`layer${l}.${n}.conv1.weight`)) n++;
    return n;
  });
  const depth = DEPTHS.find(([, b, bot]) => b === blocks.join(',') && bot === bottleneck)?.[0];
  if (!depth) throw fail(`its backbone has ${blocks.join('-')} ${bottleneck ? 'bottleneck' : 'basic'} blocks, not a ResNet-18/34/50/101/152`);
  const size = options.inputSize ?? (stem === 'imagenet' ? 224 : 32);
  const model = resnet({ depth, stem, width, inputShape: [size, size, conv1.shape[1]!], padding: 'torch', name: `resnet${depth}${stem === 'cifar' ? '_cifar' : ''}` });
  const backbone = new Map<string, TorchArray>();
  for (const [k, v] of state) if (k.startsWith(prefix)) backbone.set(k.slice(prefix.length), v);
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
    prefix,
    otherPrefixes: prefixes.filter((p) => p !== prefix),
    mapped: report.mapped,
    missing: report.missing,
    unexpected,
  };
}
