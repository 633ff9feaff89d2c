/**
 * Benchmark: what the ReLU fusions buy in a BYOL step on the native backend — batch norm + ReLU in one kernel, and a
 * residual sum + ReLU in one kernel. One learner per model and precision; its encoders' marked layers switched between
 * fused (as built) and unfused (the layer, then ReLU's own pass forward and backward), in alternating rounds in the
 * same process, so that machine noise falls on both alike. Prints images/s of each and the ratio. `--layers bn` or
 * `--layers sum` switches only that kind (default: both). (The heads' one batch norm each stays fused throughout.)
 *
 *   npm run build && node dist/bench/fusion.js [--steps N] [--rounds R] [--match REGEX] [--layers bn|sum|both]
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { Byol, type ByolOptions } from '../src/index.js';
import { fusedBatchNormClass } from '../src/nets/batchnorm.js';
import { fusedAddClass } from '../src/nets/residual.js';
import { setNativePrecision, useBackend } from '../src/node.js';

const arg = (name: string, fallback: number) => (process.argv.includes(name) ? Number(process.argv[process.argv.indexOf(name) + 1]) : fallback);
const steps = arg('--steps', 3);
const rounds = arg('--rounds', 3);
const match = process.argv.includes('--match') ? new RegExp(process.argv[process.argv.indexOf('--match') + 1]!) : null;
const kinds = process.argv.includes('--layers') ? process.argv[process.argv.indexOf('--layers') + 1]! : 'both';
if (!['bn', 'sum', 'both'].includes(kinds)) throw new Error(`--layers: expected bn, sum or both, got ${kinds}`);

const heads = { projector: { hiddenDim: 1024, outputDim: 128 }, predictor: { hiddenDim: 1024 } };
const cases: { name: string; options: ByolOptions; shape: [number, number, number, number] }[] = [
  { name: 'ConvNet 28×28, batch 64', options: { encoder: { name: 'convnet' }, batchSize: 64, totalSteps: 100, ...heads }, shape: [64, 28, 28, 1] },
  { name: 'CIFAR ResNet-18, batch 64', options: { encoder: { name: 'resnet18-cifar' }, batchSize: 64, totalSteps: 100, ...heads }, shape: [64, 32, 32, 3] },
];

await useBackend('native');
const classes = [...(kinds === 'sum' ? [] : [fusedBatchNormClass()]), ...(kinds === 'bn' ? [] : [fusedAddClass()])] as unknown as (abstract new (...args: never[]) => object)[];
const what = { bn: 'batch norm + ReLU', sum: 'residual sum + ReLU', both: 'batch norm + ReLU and residual sum + ReLU' }[kinds];
console.log(`BYOL step, native backend: ${what} fused vs unfused (encoders), ${rounds} alternating rounds of ${steps} steps`);
for (const c of cases) {
  if (match && !match.test(c.name)) continue;
  for (const precision of ['fp32', 'bf16'] as const) {
    if (!setNativePrecision(precision)) continue;
    const learner = new Byol({ ...c.options, seed: 1 });
    const marked = [learner.encoder, learner.targetEncoder]
      .filter((m): m is tfl.LayersModel => m instanceof tfl.LayersModel)
      .flatMap((m) => m.layers.filter((l) => classes.some((C) => l instanceof C) && (l as unknown as { reluFollows: boolean }).reluFollows)) as unknown as { reluFollows: boolean }[];
    const x = tf.randomUniform(c.shape, 0, 1, 'float32', 1);
    const y = tf.reverse(x, 2);
    await learner.step(x, y);
    const time = { fused: 0, unfused: 0 };
    for (let r = 0; r < rounds; r++) {
      for (const mode of ['fused', 'unfused'] as const) {
        marked.forEach((l) => (l.reluFollows = mode === 'fused'));
        await learner.step(x, y); // the first step of a mode builds nothing new, but settles the buffer pool
        const t0 = performance.now();
        for (let s = 0; s < steps; s++) await learner.step(x, y);
        time[mode] += performance.now() - t0;
      }
    }
    const ips = (ms: number) => (rounds * steps * c.shape[0]) / (ms / 1000);
    console.log(
      `${c.name.padEnd(28)} ${precision}  fused ${ips(time.fused).toFixed(1).padStart(7)} img/s  unfused ${ips(time.unfused).toFixed(1).padStart(7)} img/s  ×${(time.unfused / time.fused).toFixed(3)}  (${marked.length} layers)`,
    );
    tf.dispose([x, y]);
    learner.dispose();
  }
}
