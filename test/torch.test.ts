/**
 * Weights in and out, against the real thing: checkpoints made by Debian's python3-torch and python3-torchvision
 * (scripts/torch_fixtures.py) import into byol's ResNet with PyTorch's features, export back to safetensors that
 * torchvision loads with identical tensors, and hostile or damaged files are refused without running anything.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { ByolError } from '../src/errors.js';
import { readTorchFile } from '../src/io/torch-file.js';
import { decodeSafetensors, encodeSafetensors } from '../src/io/safetensors.js';
import { loadNativeAddon, useBackend } from '../src/node.js';
import type * as tfl from '@tensorflow/tfjs-layers';
import { resnet } from '../src/nets/resnet.js';
import { padsAsTensorFlow } from '../src/nets/torch-weights.js';
import { importResnet, importTorchResnet } from '../src/run/torch-import.js';
import { byolSync } from './cli-helpers.js';

const PYTHON = '/usr/bin/python3';
const script = fileURLToPath(new URL('../../scripts/torch_fixtures.py', import.meta.url));
const hasTorch = spawnSync(PYTHON, ['-c', 'import torch, torchvision, onnx'], { encoding: 'utf8' }).status === 0;
const skip = hasTorch ? false : 'needs python3-torch, python3-torchvision and python3-onnx (apt-get install python3-torch python3-torchvision python3-onnx)';
const dir = mkdtempSync(join(tmpdir(), 'byol-torch-'));
const mark = join(dir, 'pwned');
after(() => rmSync(dir, { recursive: true, force: true }));

interface Fixture {
  encoder: string;
  prefix?: string;
  official?: boolean;
  stemPadding?: number;
  x: number[];
  shape: [number, number, number, number];
  features: number[];
  dim: number;
}
let fixtures: Record<string, Fixture> = {};

before(() => {
  if (!hasTorch) return;
  const r = spawnSync(PYTHON, [script, 'make', dir], { encoding: 'utf8', timeout: 180_000, env: { ...process.env, BYOL_HOSTILE_MARK: mark } });
  assert.equal(r.status, 0, r.stderr);
  fixtures = JSON.parse(readFileSync(join(dir, 'fixtures.json'), 'utf8')) as Record<string, Fixture>;
});

test('checkpoints import with their own framework\'s features: torchvision ResNet-18 and -50, a CIFAR stem, solo-learn\'s Lightning checkpoint, lightly\'s Sequential, the official BYOL (Haiku) format', { skip }, async () => {
  await useBackend(loadNativeAddon() ? 'native' : 'wasm');
  for (const [file, f] of Object.entries(fixtures)) {
    const imp = await importResnet(join(dir, file), { inputSize: f.shape[1] });
    try {
      assert.equal(imp.encoder, f.encoder, file);
      assert.equal(imp.prefix, f.official ? 'res_net50/~/' : (f.prefix ?? ''), file);
      assert.equal(imp.padding, f.official ? 'same' : 'torch', file);
      assert.equal(imp.stemPadding, f.encoder.endsWith('-cifar') ? (f.stemPadding ?? 1) : null, `${file}: the CIFAR stem's padding`);
      if (f.official) assert.deepEqual(imp.unexpected, ['projector/~/linear', 'classifier'], 'the heads and the online classifier are named, not imported');
      assert.deepEqual(imp.missing, [], `${file}: missing ${imp.missing}`);
      const got = tf.tidy(() => (imp.model.predict(tf.tensor4d(f.x, f.shape)) as tf.Tensor).dataSync());
      assert.equal(got.length, f.features.length, file);
      const scale = Math.max(...f.features.map(Math.abs));
      const err = Array.from(got).reduce((m, v, i) => Math.max(m, Math.abs(v - f.features[i]!)), 0) / scale;
      // Measured here: 3e-7 to 8e-7 relative.
      assert.ok(err <= 1e-5, `${file}: relative error ${err.toExponential(2)}`);
    } finally {
      imp.model.dispose();
    }
  }
  const solo = await importTorchResnet(join(dir, 'solo.ckpt'));
  assert.deepEqual(solo.otherPrefixes, ['momentum_backbone.'], 'the momentum copy is named, not taken');
  assert.deepEqual(solo.unexpected, []);
  // solo-learn's CIFAR runs: the stem's padding and the input normalization come from its OmegaConf config.
  assert.deepEqual(solo.normalization, { mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.243, 0.261], source: "solo-learn's CIFAR normalization (its config's dataset: cifar10)" });
  assert.deepEqual(solo.notes, ["stem: padding 2, as solo-learn's CIFAR ResNets (its config's dataset: cifar10)"]);
  solo.model.dispose();
  const plain = await importTorchResnet(join(dir, 'cifar18.pth'));
  assert.match(plain.notes.join(), /a 3×3 CIFAR stem whose padding the file does not say; taken as 1 .* --stem-padding 2/);
  plain.model.dispose();
  await assert.rejects(importTorchResnet(join(dir, 'solo-unknown.ckpt')), (e: unknown) => e instanceof ByolError && e.code === 'INVALID_OPTION' && /cannot be known; give --stem-padding 2 \(or 1\)/.test((e as Error).message));
  const forced = await importTorchResnet(join(dir, 'solo-unknown.ckpt'), { stemPadding: 2 });
  assert.equal(forced.stemPadding, 2);
  forced.model.dispose();
  const momentum = await importTorchResnet(join(dir, 'solo.ckpt'), { prefix: 'momentum_backbone.' });
  momentum.model.dispose();
  await assert.rejects(importTorchResnet(join(dir, 'wide.pth')), (e: unknown) => e instanceof ByolError && e.code === 'INVALID_DATA' && /a wide ResNet in torchvision's sense \(width_per_group 128: layer1\.0\.conv1 has 128 filters for a stem of 64\)/.test((e as Error).message));
  await assert.rejects(importTorchResnet(join(dir, 'solo.ckpt'), { prefix: 'target.' }), (e: unknown) => e instanceof ByolError && e.code === 'INVALID_OPTION' && /names no backbone .* "backbone\.", "momentum_backbone\."/.test((e as Error).message));
});

test('byol import → byol export --format safetensors: torchvision loads every backbone tensor, identical; --format onnx passes onnx.checker', { skip }, () => {
  for (const [file, out] of [['tv18.pth', 'm18'], ['tv50.pth', 'm50'], ['solo.ckpt', 'msolo']] as const) {
    const imported = byolSync(['import', join(dir, file), '--out', join(dir, out)]);
    assert.equal(imported.code, 0, imported.err);
    assert.match(imported.out, /^imported resnet(18|50)(-cifar)? from .* \(prefix "(backbone\.)?": (100|265) tensors mapped, 0 missing\) to .*model\.json in [\d.]+ s$/m);
    const info = JSON.parse(readFileSync(join(dir, out, 'byol.json'), 'utf8')) as { padding: string; input: { mean: number[] } };
    assert.equal(info.padding, 'torch');
    // ImageNet's normalization, but for solo-learn's CIFAR run, whose config says CIFAR (its stem pads 2, said in a note).
    assert.deepEqual(info.input.mean, file === 'solo.ckpt' ? [0.4914, 0.4822, 0.4465] : [0.485, 0.456, 0.406]);
    if (file === 'solo.ckpt') {
      assert.match(imported.out, /^note: stem: padding 2, as solo-learn's CIFAR ResNets \(its config's dataset: cifar10\)$/m);
      assert.match(imported.out, /^input: normalized with solo-learn's CIFAR normalization/m);
      assert.equal((info as unknown as { stemPadding: number }).stemPadding, 2);
    }
    const st = join(dir, `${out}.safetensors`);
    const exported = byolSync(['export', join(dir, out), '--format', 'safetensors', '--out', st]);
    assert.equal(exported.code, 0, exported.err);
    const r = spawnSync(PYTHON, [script, 'compare', st, join(dir, file), file === 'solo.ckpt' ? 'backbone.' : ''], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    const c = JSON.parse(r.stdout) as { tensors: number; maxDiff: number; missing: string[]; unexpected: string[] };
    assert.equal(c.maxDiff, 0, `${file}: tensors identical`);
    assert.deepEqual(c.unexpected, []);
    assert.deepEqual(c.missing, ['fc.weight', 'fc.bias'], `${file}: every backbone weight loads`);
    // And to ONNX, which onnx.checker accepts (its features are checked against onnxruntime in onnx.test).
    const onnx = join(dir, `${out}.onnx`);
    const o = byolSync(['export', join(dir, out), '--format', 'onnx', '--out', onnx]);
    assert.equal(o.code, 0, o.err);
    assert.match(o.out, /\(ONNX opset 13; input image \[N, 3, H, W\] in \[0, 1\], normalized inside\)$/m);
    const check = spawnSync(PYTHON, ['-c', 'import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)', onnx], { encoding: 'utf8' });
    assert.equal(check.status, 0, check.stderr);
    assert.doesNotMatch(exported.out + o.out, /SAME/, `${file}: pads as PyTorch, exports exactly`);
  }
  // An encoder that pads as TensorFlow (the official weights, byol's own ResNets) exports with a note saying so.
  const official = join(dir, 'mofficial');
  assert.equal(byolSync(['import', join(dir, 'official.pkl'), '--out', official]).code, 0);
  const e = byolSync(['export', official, '--format', 'safetensors', '--out', join(dir, 'official.safetensors')]);
  assert.equal(e.code, 0, e.err);
  assert.match(e.out, /^note: this encoder pads as TensorFlow \("SAME", .* loaded into torchvision it computes another function .* The PyTorch companion \(python\/byol_torch\) pads as byol does/m);
});

test('padsAsTensorFlow names the models whose stride-2 windows PyTorch cannot pad alike', () => {
  const rows: [string, tfl.LayersModel, boolean][] = [
    ['resnet18 SAME', resnet({ depth: 18, stem: 'imagenet', inputShape: [32, 32, 3], seed: 1 }), true],
    ['resnet18-cifar SAME (stride-2 3×3 in layer2)', resnet({ depth: 18, stem: 'cifar', inputShape: [32, 32, 3], seed: 1 }), true],
    ['resnet18 torch padding', resnet({ depth: 18, stem: 'imagenet', inputShape: [32, 32, 3], padding: 'torch', seed: 1 }), false],
  ];
  for (const [name, model, want] of rows) {
    assert.equal(padsAsTensorFlow(model), want, name);
    model.dispose();
  }
});

test('pretrain --init FILE starts BYOL from imported weights, kept in the run as init/ (bit-identical to the file); the whole learner exports to PyTorch modules', { skip }, async (t) => {
  const sharp = (await import('sharp')).default;
  const pics = join(dir, 'pics');
  for (const [k, name] of ['a', 'b'].entries()) {
    const { mkdirSync } = await import('node:fs');
    mkdirSync(join(pics, name), { recursive: true });
    for (let i = 0; i < 8; i++) await sharp({ create: { width: 32, height: 32, channels: 3, background: { r: 40 * k + i, g: 100, b: 200 - 30 * k } } }).png().toFile(join(pics, name, `${i}.png`));
  }
  const run = join(dir, 'init-run');
  const r = byolSync(['pretrain', `folder:${pics}`, '--init', join(dir, 'cifar18.pth'), '--preset', 'cifar', '--out', run, '--epochs', '1', '--batch', '4', '--projector-hidden', '32', '--predictor-hidden', '32', '--holdout', '0']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^init: resnet18-cifar from \S+cifar18\.pth \(100 tensors mapped, 0 missing; not used: fc\.weight, fc\.bias\)$/m);
  assert.match(r.out, /done: 4 steps/);
  // Imported weights expect ImageNet's normalization, not the CIFAR preset's: the views and init/ take it.
  assert.match(r.out, /^input: normalized with mean 0\.485,0\.456,0\.406, std 0\.229,0\.224,0\.225 \(ImageNet's, as the imported weights expect; --mean\/--std to change\)$/m);
  const config = JSON.parse(readFileSync(join(run, 'config.json'), 'utf8')) as { run: { encoder: string }; views: { mean: number[]; std: number[] } };
  assert.equal(config.run.encoder, join(run, 'init'));
  assert.deepEqual([config.views.mean, config.views.std], [[0.485, 0.456, 0.406], [0.229, 0.224, 0.225]]);
  const initInfo = JSON.parse(readFileSync(join(run, 'init', 'byol.json'), 'utf8')) as { input: { mean: number[]; size: number } };
  assert.deepEqual([initInfo.input.mean, initInfo.input.size], [[0.485, 0.456, 0.406], 32]);
  // A model folder's own normalization (byol.json) is taken; --mean/--std choose another.
  const folder = join(dir, 'm-half');
  assert.equal(byolSync(['import', join(dir, 'cifar18.pth'), '--out', folder, '--mean', '0.5,0.5,0.5', '--std', '0.25,0.25,0.25']).code, 0);
  const tiny = ['--preset', 'cifar', '--epochs', '1', '--batch', '8', '--projector-hidden', '16', '--predictor-hidden', '16', '--holdout', '0'];
  const f = byolSync(['pretrain', `folder:${pics}`, '--encoder', folder, '--out', join(dir, 'folder-run'), ...tiny]);
  assert.equal(f.code, 0, f.err);
  assert.match(f.out, /^input: normalized with mean 0\.5,0\.5,0\.5, std 0\.25,0\.25,0\.25 \(as \S+m-half\/byol\.json records/m);
  const g = byolSync(['pretrain', `folder:${pics}`, '--encoder', folder, '--mean', '0.1,0.2,0.3', '--std', '1,1,1', '--out', join(dir, 'flag-run'), ...tiny]);
  assert.equal(g.code, 0, g.err);
  assert.doesNotMatch(g.out, /^input:/m);
  assert.deepEqual((JSON.parse(readFileSync(join(dir, 'flag-run', 'config.json'), 'utf8')) as { views: { mean: number[] } }).views.mean, [0.1, 0.2, 0.3]);
  const st = join(dir, 'init.safetensors');
  assert.equal(byolSync(['export', join(run, 'init'), '--format', 'safetensors', '--out', st]).code, 0);
  const c = JSON.parse(spawnSync(PYTHON, [script, 'compare', st, join(dir, 'cifar18.pth')], { encoding: 'utf8' }).stdout) as { maxDiff: number };
  assert.equal(c.maxDiff, 0);
  // The whole learner, to continue BYOL in PyTorch: every network loads into its PyTorch module.
  const whole = join(dir, 'whole.safetensors');
  const w = byolSync(['export', run, '--format', 'safetensors', '--whole', '--out', whole]);
  assert.equal(w.code, 0, w.err);
  assert.match(w.out, /exported the whole learner of \S+step-00000004\.byol \(step 4 of \d+, \d+ tensors: online and target networks, optimizer state\)/);
  assert.doesNotMatch(w.out, /SAME/, 'a run started from PyTorch weights pads as PyTorch');
  const emb = join(dir, 'emb.npy');
  assert.equal(byolSync(['embed', run, `folder:${pics}`, '--out', emb]).code, 0);
  const loaded = JSON.parse(spawnSync(PYTHON, [script, 'whole', whole, emb, pics], { encoding: 'utf8' }).stdout) as Record<string, unknown>;
  const features = loaded['features'] as { n: number; maxRelDiff: number };
  assert.deepEqual(loaded['metadata'], ['architecture', 'checkpoint', 'config', 'encoderTopology', 'format', 'input', 'learner', 'optimizer', 'padding', 'parameters', 'step', 'stepsPerEpoch', 'totalSteps', 'version', 'viewRng', 'views']);
  assert.equal(loaded['learner'], 'loaded', 'the companion loads both networks and the optimizer state strictly');
  assert.deepEqual(loaded['architecture'], { kind: 'resnet', depth: 18, stem: 'cifar', width: 1, padding: 'torch', inputShape: [32, 32, 3] });
  // The online encoder in the companion gives byol embed's features of the same images.
  assert.equal(features.n, 16);
  t.diagnostic(`online encoder in the companion vs byol embed: max relative difference ${features.maxRelDiff.toExponential(2)}`);
  assert.ok(features.maxRelDiff < 1e-4, `features differ by ${features.maxRelDiff}`);
  const both = byolSync(['pretrain', `folder:${pics}`, '--init', join(dir, 'cifar18.pth'), '--encoder', 'convnet', '--out', join(dir, 'never')]);
  assert.equal(both.code, 2);
  assert.match(both.err, /--init and --encoder both choose the encoder; give one/);
});

test('hostile, damaged and foreign files are refused with one line, and nothing in them runs', { skip }, async () => {
  await assert.rejects(readTorchFile(join(dir, 'hostile.pth')), (e: unknown) => e instanceof ByolError && /refusing the pickle global posix\.system|refusing the pickle global os\.system/.test((e as Error).message));
  const r = byolSync(['import', join(dir, 'hostile.pth'), '--out', join(dir, 'never')]);
  assert.equal(r.code, 2);
  assert.match(r.err.trim(), /^byol: \S+hostile\.pth: refusing the pickle global (posix|os)\.system \(only the tensors, arrays and dicts of model weights are read; nothing in the file is run\)$/);
  const plain = byolSync(['import', join(dir, 'hostile.pkl'), '--out', join(dir, 'never')]);
  assert.equal(plain.code, 2);
  assert.match(plain.err.trim(), /^byol: \S+hostile\.pkl: refusing the pickle global (posix|os)\.system/);
  assert.equal(existsSync(mark), false, 'the pickles did not run');
  assert.equal(existsSync(join(dir, 'never')), false, 'nothing written');
  const shape = byolSync(['import', join(dir, 'bad-shape.pth'), '--out', join(dir, 'never')]);
  assert.equal(shape.code, 2);
  assert.match(shape.err.trim(), /^byol: \S+bad-shape\.pth: layer2\.0\.conv1\.weight has shape \[128,32,3,3\], the model needs \[128,64,3,3\]$/);
  const whole = readFileSync(join(dir, 'tv18.pth'));
  const cases: [string, Buffer, RegExp][] = [
    ['truncated.pth', whole.subarray(0, Math.floor(whole.length / 2)), /not a ZIP archive|truncated|cut short|missing from the archive/],
    ['text.pth', Buffer.from('not a checkpoint'), /not a PyTorch file/],
    ['legacy.pth', Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]), /legacy \(before PyTorch 1\.6\) format/],
    ['cut.pkl', readFileSync(join(dir, 'official.pkl')).subarray(0, 5000), /truncated pickle/],
  ];
  for (const [name, bytes, pattern] of cases) {
    writeFileSync(join(dir, name), bytes);
    const res = byolSync(['import', join(dir, name), '--out', join(dir, 'never')]);
    assert.equal(res.code, 2, `${name}: ${res.err}`);
    assert.equal(res.err.trim().split('\n').length, 1, name);
    assert.match(res.err, pattern, name);
  }
});

test('safetensors: encode → decode round trip; a truncated file is named', () => {
  const tensors = new Map([
    ['a.weight', { shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) }],
    ['b', { shape: [], data: Float32Array.from([7]) }],
  ]);
  const bytes = encodeSafetensors(tensors, { format: 'pt' });
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal((8 + n) % 8, 0, 'data 8-byte aligned');
  const back = decodeSafetensors(bytes, 'x.safetensors');
  assert.deepEqual([...back.tensors.keys()], ['a.weight', 'b']);
  assert.deepEqual(Array.from(back.tensors.get('a.weight')!.data), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(back.metadata, { format: 'pt' });
  assert.throws(() => decodeSafetensors(bytes.subarray(0, bytes.length - 4), 'x.safetensors'), /x\.safetensors: a\.weight lies past|x\.safetensors: b lies past/);
});
