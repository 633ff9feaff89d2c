import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as tfl from '@tensorflow/tfjs-layers';
import { Byol, ByolError, resolveByolOptions, type ByolOptions } from '../src/index.js';

const base: ByolOptions = { encoder: 'resnet18-cifar', batchSize: 256, totalSteps: 1000 };

test('defaults are the paper\'s', () => {
  const o = resolveByolOptions(base);
  assert.deepEqual(o.projector, { hiddenDim: 4096, outputDim: 256 }); // §3.3
  assert.deepEqual(o.predictor, { hiddenDim: 4096 }); // §3.3
  assert.equal(o.tau, 0.996); // §3.3
  assert.equal(o.tauSchedule, 'cosine');
  assert.equal(o.optimizer, 'lars'); // App. B
  assert.equal(o.baseLearningRate, 0.2); // App. B
  assert.equal(o.weightDecay, 1.5e-6); // App. B
  assert.equal(o.momentum, 0.9);
  assert.equal(o.larsEta, 1e-3);
  assert.equal(o.beta, 0);
  assert.equal(o.mode, 'byol');
  assert.deepEqual(o.batchNorm, { momentum: 0.9, epsilon: 1e-5 });
  assert.equal(o.warmupSteps, 10); // 1 % of the run
  assert.equal(resolveByolOptions({ ...base, stepsPerEpoch: 20 }).warmupSteps, 200); // 10 epochs, App. B
  assert.equal(resolveByolOptions({ ...base, optimizer: 'sgd' }).baseLearningRate, 0.05);
  assert.equal(resolveByolOptions({ ...base, optimizer: 'adamw' }).baseLearningRate, 1e-3);
});

const bad: [string, Record<string, unknown>, string][] = [
  ['negative learning rate', { baseLearningRate: -0.1 }, 'baseLearningRate'],
  ['zero learning rate', { baseLearningRate: 0 }, 'baseLearningRate'],
  ['τ above 1', { tau: 1.01 }, 'tau'],
  ['τ below 0', { tau: -0.5 }, 'tau'],
  ['τ not a number', { tau: '0.99' }, 'tau'],
  ['batch of 1 with batch-norm heads', { batchSize: 1 }, 'batchSize'],
  ['fractional batch', { batchSize: 12.5 }, 'batchSize'],
  ['no steps', { totalSteps: 0 }, 'totalSteps'],
  ['warm-up as long as the run', { warmupSteps: 1000 }, 'warmupSteps'],
  ['unknown optimizer', { optimizer: 'adam' }, 'optimizer'],
  ['momentum of 1', { momentum: 1 }, 'momentum'],
  ['negative weight decay', { weightDecay: -1e-6 }, 'weightDecay'],
  ['NaN weight decay', { weightDecay: NaN }, 'weightDecay'],
  ['negative β', { beta: -1 }, 'beta'],
  ['zero temperature', { temperature: 0 }, 'temperature'],
  ['unknown mode', { mode: 'moco' }, 'mode'],
  ['unknown τ schedule', { tauSchedule: 'linear' }, 'tauSchedule'],
  ['bad projector size', { projector: { hiddenDim: 0 } }, 'projector.hiddenDim'],
  ['bad predictor size', { predictor: { hiddenDim: 1.5 } }, 'predictor.hiddenDim'],
  ['predictor: true', { predictor: true }, 'predictor'],
  ['unknown encoder name', { encoder: 'vgg16' }, 'encoder'],
  ['bad encoder width', { encoder: { name: 'resnet50', width: 0 } }, 'encoder.width'],
  ['bad encoder input shape', { encoder: { name: 'resnet18', inputShape: [32, 32] } }, 'encoder.inputShape'],
  ['misspelt option', { batchsize: 256 }, 'batchsize'],
  ['BN momentum above 1', { batchNorm: { momentum: 2 } }, 'batchNorm.momentum'],
  ['negative seed', { seed: -1 }, 'seed'],
];

for (const [what, patch, option] of bad) {
  test(`refuses ${what} with INVALID_OPTION naming \`${option}\``, () => {
    assert.throws(
      () => resolveByolOptions({ ...base, ...patch } as unknown as ByolOptions),
      (e: unknown) => {
        assert.ok(e instanceof ByolError, String(e));
        assert.equal(e.code, 'INVALID_OPTION');
        assert.equal(e.option, option);
        assert.match(e.message, new RegExp(`\`${option.replace('.', '\\.')}\` must be`));
        return true;
      },
    );
  });
}

test('an encoder whose output is not a vector per image is refused with INVALID_ENCODER', () => {
  const conv = tfl.sequential({ layers: [tfl.layers.conv2d({ inputShape: [8, 8, 3], filters: 4, kernelSize: 3 })] });
  assert.throws(
    () => new Byol({ ...base, encoder: conv }),
    (e: unknown) => e instanceof ByolError && e.code === 'INVALID_ENCODER' && e.option === 'encoder' && /\[null,6,6,4\]/.test(e.message),
  );
  const flat = tfl.sequential({ layers: [tfl.layers.dense({ inputShape: [12], units: 4 })] });
  assert.throws(() => new Byol({ ...base, encoder: flat }), (e: unknown) => e instanceof ByolError && e.code === 'INVALID_ENCODER' && /image batches/.test(e.message));
  const same = tfl.sequential({ layers: [tfl.layers.flatten({ inputShape: [2, 2, 1] }), tfl.layers.dense({ units: 2 })] });
  assert.throws(() => new Byol({ ...base, encoder: () => same }), (e: unknown) => e instanceof ByolError && /same model twice/.test(e.message));
  [conv, flat, same].forEach((m) => m.dispose());
});
