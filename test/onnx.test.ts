/**
 * ONNX export: byol's encoders (the ConvNet, ResNets with TensorFlow's or PyTorch's padding, both stems) as ONNX files
 * that onnxruntime (onnxruntime-web's wasm build, run here in Node) evaluates to the tfjs features, and that
 * onnx.checker (Debian's python3-onnx) accepts with full shape inference.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import * as ort from 'onnxruntime-web';
import { exportOnnx } from '../src/io/onnx.js';
import { convNet } from '../src/nets/convnet.js';
import { resnet } from '../src/nets/resnet.js';
import { loadNativeAddon, useBackend } from '../src/node.js';

const PYTHON = '/usr/bin/python3';
const hasOnnx = spawnSync(PYTHON, ['-c', 'import onnx'], { encoding: 'utf8' }).status === 0;
const dir = mkdtempSync(join(tmpdir(), 'byol-onnx-'));
after(() => rmSync(dir, { recursive: true, force: true }));
ort.env.wasm.numThreads = 1;

/** Random, non-trivial batch-norm statistics, so that the inference path is exercised. */
function perturbBatchNorm(model: tfl.LayersModel): void {
  let seed = 1;
  for (const layer of model.layers) {
    if (layer.getClassName() !== 'BatchNormalization') continue;
    layer.setWeights(layer.getWeights().map((w, i) => tf.tidy(() => (i === 3 ? tf.randomUniform(w.shape, 0.5, 2, 'float32', seed++) : tf.randomUniform(w.shape, i === 0 ? 0.5 : -0.3, i === 0 ? 1.5 : 0.3, 'float32', seed++)))));
  }
}

test('ONNX files of byol\'s encoders give the tfjs features under onnxruntime, and pass onnx.checker', async () => {
  // The tfjs side on the fastest backend here (native and wasm match the cpu backend, each tested elsewhere).
  await useBackend(loadNativeAddon() ? 'native' : 'wasm');
  const cases: [string, tfl.LayersModel, number[], number[]][] = [
    ['convnet', convNet({ seed: 1 }), [0.286], [0.353]],
    ['resnet18 same padding', resnet({ depth: 18, stem: 'imagenet', inputShape: [64, 64, 3], seed: 2 }), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]],
    ['resnet18-cifar torch padding', resnet({ depth: 18, stem: 'cifar', inputShape: [32, 32, 3], padding: 'torch', seed: 3 }), [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]],
    ['resnet50 torch padding', resnet({ depth: 50, stem: 'imagenet', inputShape: [64, 64, 3], padding: 'torch', seed: 4 }), [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]],
  ];
  for (const [name, model, mean, std] of cases) {
    perturbBatchNorm(model);
    const [, h, w, c] = model.inputs[0]!.shape as number[];
    const bytes = await exportOnnx(model, { mean, std });
    const file = join(dir, `${name.replace(/\W+/g, '-')}.onnx`);
    writeFileSync(file, bytes);
    const x = tf.randomUniform([2, h!, w!, c!], 0, 1, 'float32', 9);
    const ref = tf.tidy(() => (model.predict(tf.div(tf.sub(x, tf.tensor1d(mean)), tf.tensor1d(std))) as tf.Tensor).dataSync());
    const nchw = tf.tidy(() => tf.transpose(x, [0, 3, 1, 2]).dataSync() as Float32Array);
    const session = await ort.InferenceSession.create(bytes);
    const out = await session.run({ image: new ort.Tensor('float32', Float32Array.from(nchw), [2, c!, h!, w!]) });
    const got = out['features']!.data as Float32Array;
    assert.equal(got.length, ref.length, name);
    const scale = Math.max(...Array.from(ref, Math.abs));
    const err = Array.from(ref).reduce((m, v, i) => Math.max(m, Math.abs(v - got[i]!)), 0) / scale;
    assert.ok(err <= 1e-4, `${name}: relative error ${err.toExponential(2)}`);
    await session.release();
    if (hasOnnx) {
      const r = spawnSync(PYTHON, ['-c', `import onnx, sys; m = onnx.load(sys.argv[1]); onnx.checker.check_model(m, full_check=True); print(m.opset_import[0].version)`, file], { encoding: 'utf8' });
      assert.equal(r.status, 0, `${name}: ${r.stderr}`);
      assert.equal(r.stdout.trim(), '13');
    }
    tf.dispose(x);
    model.dispose();
  }
});
