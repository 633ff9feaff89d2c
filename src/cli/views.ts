/** `byol views`: the view batches a run takes next, for the PyTorch companion (python/continue_byol.py --views). */
import { ByolError } from '../errors.js';
import { claimOutputFile } from '../io/output.js';
import { stepsElsewhere } from '../run/pretrain.js';
import { writeRunViews } from '../run/views-file.js';
import { parseArgs, type Command } from './args.js';
import { readWholeExport, selectBackend, type Io } from './commands.js';

export const VIEWS: Command = {
  name: 'views',
  summary: 'write the view batches an exported run trains on next, for the PyTorch companion',
  usage: 'byol views FILE.safetensors --steps N --out VIEWS.safetensors [--dataset SPEC]',
  positionals: [{ name: 'FILE' }],
  notes: [
    'FILE: a whole-learner export (byol export RUN --format safetensors --whole, or the companion\'s whole.safetensors).',
    'VIEWS holds views.K.1 and views.K.2 for the next N steps K (at most to the end of the run): the run\'s data order',
    'and its views generator, as byol pretrain would draw them, so that a run continued in PyTorch trains on what it',
    'would have trained on here. The file is built in memory (at most 8 GiB); never written over a file byol did not make.',
  ].join('\n'),
  flags: [
    { name: 'steps', type: 'int', arg: 'N', min: 1, help: 'steps to write' },
    { name: 'out', type: 'string', arg: 'FILE', help: 'the .safetensors file to write' },
    { name: 'dataset', type: 'string', arg: 'SPEC', help: "the run's data at another path (default: the dataset its config names)" },
    { name: 'overwrite', type: 'bool', help: 'replace FILE' },
    { name: 'backend', type: 'string', arg: 'NAME', choices: ['auto', 'native', 'wasm', 'cpu'], help: 'tfjs backend the views are drawn on (default auto)' },
  ],
  examples: ['byol views cifar-whole.safetensors --steps 2000 --out cifar-views.safetensors'],
};

export async function runViewsCommand(argv: readonly string[], io: Io): Promise<number> {
  const { flags, positionals } = parseArgs(VIEWS, argv);
  const out = flags.get('out') as string | undefined;
  const steps = flags.get('steps') as number | undefined;
  if (!out || !out.endsWith('.safetensors')) throw new ByolError('INVALID_OPTION', '`byol views` needs --out FILE.safetensors', 'out');
  if (steps === undefined) throw new ByolError('INVALID_OPTION', '`byol views` needs --steps N', 'steps');
  const file = positionals[0]!;
  const whole = await readWholeExport(file, flags.get('dataset') as string | undefined);
  const config = whole.config;
  const viewRng = whole.info['viewRng'];
  const spe = whole.info['stepsPerEpoch'];
  if (typeof viewRng !== 'number' || typeof spe !== 'number') throw new ByolError('INVALID_DATA', `${file}: its metadata lacks the views generator's state or the steps per epoch`, file);
  if (whole.info.step >= whole.info.totalSteps) throw new ByolError('INVALID_OPTION', `${file}: the run is at its end (step ${whole.info.step} of ${whole.info.totalSteps}); no steps are left to draw views for`, 'steps');
  await claimOutputFile(out, flags.get('overwrite') === true);
  await selectBackend(flags, io);
  const t0 = Date.now();
  const r = await writeRunViews({ config, from: whole.info.step, steps, stepsPerEpoch: spe, totalSteps: whole.info.totalSteps, viewRng, drawnElsewhere: stepsElsewhere(whole.info), out, log: io.err });
  io.out(`wrote the views of steps ${whole.info.step + 1}–${whole.info.step + r.steps} (${r.steps} × 2 × ${config.batchSize} images, ${(r.bytes / 2 ** 20).toFixed(1)} MiB) to ${out} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return 0;
}
