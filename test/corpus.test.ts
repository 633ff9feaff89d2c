/**
 * The corpus of bad inputs and faults (issue 11), run through the CLI as a user would: each case is a mistake or a
 * fault, the exit code and one-line message it must give, and a check that nothing on disk was lost — the user's
 * files byte for byte, a run's checkpoints, and for a refusal the whole destination unchanged. Then the cases that
 * need a timeline: readers hammering a live run, a folder that changes under a run, Ctrl-C inside an evaluation.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it, test } from 'node:test';
import sharp from 'sharp';
import { learnerFromCheckpoint, listCheckpoints, readNewestCheckpoint } from '../src/run/checkpoints.js';
import { byol, dataset, lost, main, mlpEncoder, mountNamespace, ownMain, sized, skipNoData, snapshot, type Ran } from './cli-helpers.js';

const root = mkdtempSync(join(tmpdir(), 'byol-corpus-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** A finished tiny run (cpu, MLP encoder): 8 steps, checkpoints at steps 4 and 8. Commands only read it. */
let base = '';
let enc = '';
const cpu = ['--backend', 'cpu'];
/** Flags of a fresh tiny run of `epochs` epochs of 8 steps on the cpu backend. */
const tiny = (epochs = 2) => [...sized(epochs), '--encoder', enc, ...cpu];
/** The same for an image folder read as 28×28 grey images: all its images, batches of `batch`. */
const tinyFolder = (epochs: number, batch: number) => ['--preset', 'grey', '--epochs', String(epochs), '--batch', String(batch), '--projector-hidden', '64', '--projector-out', '32', '--predictor-hidden', '64', '--encoder', enc, ...cpu];

before(async () => {
  if (skipNoData) return;
  enc = await mlpEncoder(root);
  base = join(root, 'base');
  // A fixture: always made by this build, also when the cases run against another (BYOL_TEST_CLI).
  const r = await byol(['pretrain', dataset, '--out', base, ...tiny(1), '--checkpoint-every', '4', '--keep', '2'], { main: ownMain });
  assert.equal(r.code, 0, r.err);
});

/** A user's photo folder: `count` small files of their own (what a command must never delete). */
function userPhotos(dir: string, count = 300): void {
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < count; i++) writeFileSync(join(dir, `IMG_${String(i).padStart(4, '0')}.jpg`), `photo ${i}`);
}

/** A labelled image folder: 3 classes × `n` JPEGs of 32×32 in distinct colours. */
async function imageClasses(dir: string, n = 12): Promise<void> {
  const colours = [[220, 30, 30], [30, 200, 40], [40, 40, 220]] as const;
  for (const [k, name] of ['red', 'green', 'blue'].entries()) {
    mkdirSync(join(dir, name), { recursive: true });
    for (let i = 0; i < n; i++) {
      const [r, g, b] = colours[k]!;
      await sharp({ create: { width: 32, height: 32, channels: 3, background: { r: r - i, g: g + i, b } } }).jpeg({ quality: 90 }).toFile(join(dir, name, `${i}.jpg`));
    }
  }
}

/** CIFAR-10 in the binary layout, zero-filled (sparse) files with `records` records each. */
function cifarFiles(dir: string, records: Record<string, number>): void {
  mkdirSync(dir, { recursive: true });
  for (const [name, n] of Object.entries(records)) {
    writeFileSync(join(dir, name), '');
    truncateSync(join(dir, name), n * 3073);
  }
}

/** One step of a case: a command, the exit code it must give, and what it must say. */
interface Step {
  readonly args?: readonly string[];
  /** A shell line instead of `args` (run in the case's folder), e.g. inside a mount namespace. */
  readonly shell?: string;
  readonly code: number;
  /** Matched against stderr's one line when the code is not 0, else against stdout and stderr. */
  readonly says: RegExp;
  /** Send `signal` when stdout matches `when`. */
  readonly when?: RegExp;
  readonly signal?: NodeJS.Signals;
}

interface Case {
  readonly name: string;
  readonly skip?: string | false;
  /** Makes the case's files in its folder `w` (the working folder of every step). */
  readonly prepare?: (w: string) => void | Promise<void>;
  readonly steps: (w: string) => Step[];
  /** Paths (in `w`) whose files must all survive unchanged. */
  readonly keep?: readonly string[];
  /** The kept paths must be exactly as before (nothing added either): a refusal writes nothing. */
  readonly unchanged?: boolean;
  readonly check?: (w: string, ran: Ran[]) => void | Promise<void>;
}

const node = JSON.stringify(process.execPath);
const cli = (args: string) => `${node} ${JSON.stringify(main)} ${args}`;
const noMounts = mountNamespace ? false : 'no mount namespace here (unshare)';

const cases: Case[] = [
  // ------------------------------------------------------------ outputs never destroy what byol did not create
  {
    name: 'export into the run folder itself is refused; the run is intact',
    steps: () => [{ args: ['export', 'base', '--out', 'base'], code: 2, says: /^byol: base: holds a byol run, not a byol export; choose another folder$/ }],
    keep: ['base'],
    unchanged: true,
  },
  {
    name: 'export into a folder of 300 user files is refused, the folder unchanged',
    prepare: (w) => userPhotos(join(w, 'photos')),
    steps: () => [{ args: ['export', 'base', '--out', 'photos'], code: 2, says: /^byol: photos: not empty \(300 entries: "IMG_0000\.jpg", .*\) and not made by byol; .*pass --overwrite/ }],
    keep: ['photos'],
    unchanged: true,
  },
  {
    name: 'export --out . in a working folder with files is refused',
    prepare: (w) => userPhotos(join(w, 'photos'), 3),
    steps: () => [{ args: ['export', 'base', '--out', '.'], code: 2, says: /^byol: \.: not empty .* not made by byol/ }],
    keep: ['.'],
    unchanged: true,
  },
  {
    name: 'export --overwrite adds the model beside the user files and replaces none of them',
    prepare: (w) => userPhotos(join(w, 'photos'), 20),
    steps: () => [{ args: ['export', 'base', '--out', 'photos', '--overwrite'], code: 0, says: /exported the encoder .* to photos\/model\.json/ }],
    keep: ['photos'],
    check: (w) => assert.ok(readdirSync(join(w, 'photos')).some((f) => /^weights-[0-9a-f]{12}\.bin$/.test(f))),
  },
  {
    name: 'export --overwrite still refuses to replace a model.json byol did not write',
    prepare: (w) => {
      userPhotos(join(w, 'site'), 2);
      writeFileSync(join(w, 'site', 'model.json'), '{"mine": true}');
    },
    steps: () => [{ args: ['export', 'base', '--out', 'site', '--overwrite'], code: 2, says: /^byol: site\/model\.json: exists and byol did not write it/ }],
    keep: ['site'],
    unchanged: true,
  },
  {
    name: 'exporting again into byol\'s own export folder replaces only its own files (a file the user added stays)',
    steps: () => [
      { args: ['export', join('base', 'checkpoints', 'step-00000004.byol'), '--out', 'model'], code: 0, says: /step 4,/ },
      { shell: `echo "my notes" > model/NOTES.txt && ${cli(`export base --out model`)}`, code: 0, says: /step 8,/ },
    ],
    check: (w) => {
      const files = readdirSync(join(w, 'model')).sort();
      assert.equal(readFileSync(join(w, 'model', 'NOTES.txt'), 'utf8'), 'my notes\n');
      assert.equal(files.filter((f) => f.startsWith('weights-')).length, 1, `the earlier weights are gone: ${files}`);
      assert.deepEqual(files.filter((f) => !f.startsWith('weights-')), ['.byol-output.json', 'NOTES.txt', 'byol.json', 'model.json']);
    },
  },
  {
    name: 'export --out naming a file is refused',
    prepare: (w) => writeFileSync(join(w, 'notes.txt'), 'keep me'),
    steps: () => [{ args: ['export', 'base', '--out', 'notes.txt'], code: 2, says: /^byol: notes\.txt: is a file; byol writes a folder there/ }],
    keep: ['notes.txt'],
    unchanged: true,
  },
  {
    name: 'embed refuses an existing .npy, and its .jsonl beside it, unless --overwrite',
    prepare: (w) => {
      writeFileSync(join(w, 'a.npy'), 'mine');
      writeFileSync(join(w, 'b.jsonl'), 'mine too');
    },
    steps: () => [
      { args: ['embed', 'base', `${dataset}@test`, '--limit', '4', '--out', 'a.npy', ...cpu], code: 2, says: /^byol: a\.npy: exists; pass --overwrite to replace it/ },
      { args: ['embed', 'base', `${dataset}@test`, '--limit', '4', '--out', 'b.npy', ...cpu], code: 2, says: /^byol: b\.jsonl: exists; pass --overwrite/ },
    ],
    keep: ['a.npy', 'b.jsonl'],
    unchanged: true,
    check: (w) => assert.equal(existsSync(join(w, 'b.npy')), false),
  },
  {
    name: 'embed --overwrite replaces the file the user named, atomically',
    prepare: (w) => writeFileSync(join(w, 'a.jsonl'), 'old'),
    steps: () => [{ args: ['embed', 'base', `${dataset}@test`, '--limit', '3', '--out', 'a.jsonl', '--overwrite', ...cpu], code: 0, says: /wrote 3 embeddings/ }],
    check: (w) => assert.equal(readFileSync(join(w, 'a.jsonl'), 'utf8').trim().split('\n').length, 3),
  },
  {
    name: 'plot into a folder of user files is refused; plotting a run twice reuses its own plots folder',
    prepare: (w) => userPhotos(join(w, 'photos'), 5),
    steps: (w) => [
      { args: ['plot', 'base', '--out', 'photos'], code: 2, says: /^byol: photos: not empty/ },
      { args: ['plot', 'base', '--out', join(w, 'charts')], code: 0, says: /loss\.svg/ },
      { args: ['plot', 'base', '--out', join(w, 'charts')], code: 0, says: /loss\.svg/ },
    ],
    keep: ['photos'],
  },
  {
    name: 'pretrain --out a folder of user files is refused, unchanged; with --overwrite the run goes beside them',
    prepare: (w) => userPhotos(join(w, 'photos'), 30),
    steps: () => [
      { args: ['pretrain', dataset, '--out', 'photos', ...tiny(1)], code: 2, says: /^byol: photos: not empty \(30 entries/ },
      { args: ['pretrain', dataset, '--out', 'photos', ...tiny(1), '--overwrite', '--knn-every', '0'], code: 0, says: /done: 8 steps/ },
    ],
    keep: ['photos'],
  },
  {
    name: 'pretrain --out naming a file is one line, exit 2',
    prepare: (w) => writeFileSync(join(w, 'file'), 'x'),
    steps: () => [{ args: ['pretrain', dataset, '--out', 'file', ...tiny(1)], code: 2, says: /^byol: file: is a file; byol writes a folder there/ }],
    keep: ['file'],
    unchanged: true,
  },
  {
    name: '--out under /proc is one line, exit 2, at once (no hang) for pretrain, export, embed and plot',
    steps: () => [
      { args: ['pretrain', dataset, '--out', '/proc/byol-x', ...tiny(1)], code: 2, says: /^byol: \/proc\/byol-x: cannot create the folder: .*\(ENOENT\)/ },
      { args: ['export', 'base', '--out', '/proc/byol-x/model'], code: 2, says: /^byol: \/proc\/byol-x: cannot create the folder/ },
      { args: ['embed', 'base', `${dataset}@test`, '--limit', '2', '--out', '/proc/byol-x/e.npy', ...cpu], code: 2, says: /^byol: \/proc\/byol-x: cannot create the folder/ },
      { args: ['plot', 'base', '--out', '/proc/byol-x'], code: 2, says: /^byol: \/proc\/byol-x: cannot create the folder/ },
    ],
  },
  {
    name: 'a read-only file system is one line naming the path, exit 2 (pretrain, export, embed, plot)',
    skip: noMounts,
    prepare: (w) => mkdirSync(join(w, 'ro')),
    steps: () => {
      const inRo = (cmd: string) => `${mountNamespace} sh -c 'mount -t tmpfs -o size=1m,ro tmpfs ro && exec ${cli(cmd).replace(/'/g, "'\\''")}'`;
      return [
        { shell: inRo(`pretrain ${dataset} --out ro/run ${tiny(1).join(' ')}`), code: 2, says: /^byol: \S*ro\/run: cannot create the folder: read-only file system \(EROFS\)$/ },
        { shell: inRo(`export base --out ro/model`), code: 2, says: /^byol: \S*ro\/model: cannot create the folder: read-only file system/ },
        { shell: inRo(`embed base ${dataset}@test --limit 2 --out ro/e.npy --backend cpu`), code: 2, says: /^byol: ro\/e\.npy: cannot write: read-only file system \(EROFS\)/ },
        { shell: inRo(`plot base --out ro/plots`), code: 2, says: /^byol: \S*ro\/plots: cannot create the folder: read-only/ },
      ];
    },
  },
  {
    name: 'a full disk at a checkpoint stops with one line and a way forward; after making room --resume finishes',
    skip: noMounts,
    prepare: (w) => mkdirSync(join(w, 'small')),
    steps: () => [
      {
        // 256 KiB hold config.json and metrics.jsonl but not a checkpoint (~0.7 MB); then the disk grows to 8 MiB.
        shell:
          `${mountNamespace} sh -c 'mount -t tmpfs -o size=256k tmpfs small && ` +
          `${cli(`pretrain ${dataset} --out small/run ${tiny(2).join(' ')} --knn-every 0`)} 2>&1; echo "first=$?"; ` +
          `mount -o remount,size=8m small && ${cli('pretrain --resume small/run')}; echo "second=$?"; ls small/run/checkpoints'`,
        code: 0,
        says: /small\/run\/checkpoints\/step-00000008\.byol: cannot write: no space left on the device \(ENOSPC\); nothing was replaced \(checkpoint of step 8\); the run stopped at step 8; no checkpoint was written yet; make room, then continue with byol pretrain --resume small\/run\nfirst=2\n[\s\S]*done: 16 steps[\s\S]*second=0\nstep-00000008\.byol\nstep-00000016\.byol/,
      },
    ],
  },

  // ------------------------------------------------------------ every failure leaves a way forward
  {
    name: 'a run killed before its first checkpoint continues with one command: --resume (from step 0, said), or the same command again',
    steps: () => {
      const start = (out: string) => ['pretrain', dataset, '--out', out, ...tiny(2), '--log-every', '1', '--checkpoint-every', '100'];
      return [
        { args: start('run'), code: 137, says: /step 3\/16/, when: /step 3\/16/, signal: 'SIGKILL' },
        { args: ['pretrain', '--resume', 'run'], code: 0, says: /run: no checkpoint yet, so the run starts over from step 0 with its saved config[\s\S]*done: 16 steps/ },
        { args: start('again'), code: 137, says: /step 3\/16/, when: /step 3\/16/, signal: 'SIGKILL' },
        { args: start('again'), code: 0, says: /again holds a run that stopped before its first checkpoint: starting it over with these options[\s\S]*done: 16 steps/ },
      ];
    },
  },
  {
    name: 'a NaN before the first checkpoint: the message\'s own command (--resume --lr) continues, recorded in config.json',
    steps: () => [
      { args: ['pretrain', dataset, '--out', 'run', ...tiny(2), '--lr', '1e30', '--warmup-epochs', '0', '--checkpoint-every', '100', '--knn-every', '0'], code: 3, says: /No checkpoint was written yet; continue with a lower learning rate: byol pretrain --resume run --lr 5e\+29 \(starts over from step 0\)/ },
      { args: ['pretrain', '--resume', 'run', '--lr', '0.2'], code: 0, says: /changed: lr 1e\+30 → 0\.2 \(recorded in config\.json\)[\s\S]*done: 16 steps/ },
    ],
    check: (w) => {
      const record = JSON.parse(readFileSync(join(w, 'run', 'config.json'), 'utf8')) as { run: { lr: number }; resumes: { step: number; changed: Record<string, unknown> }[] };
      assert.equal(record.run.lr, 0.2);
      assert.deepEqual(record.resumes.map((r) => [r.step, r.changed]), [[0, { lr: { from: 1e30, to: 0.2 } }]]);
    },
  },
  {
    name: 'a NaN after a checkpoint: --resume --lr continues from the last good checkpoint',
    steps: () => [
      { args: ['pretrain', dataset, '--out', 'run', ...tiny(2), '--checkpoint-every', '100', '--knn-every', '0', '--log-every', '1'], code: 130, says: /stopped at step [45]\/16/, when: /step 4\/16/ },
      { args: ['pretrain', '--resume', 'run', '--lr', '1e30'], code: 3, says: /^byol: loss became NaN at step \d+ \(epoch 1\); stopped\. run\/checkpoints\/step-0000000[45]\.byol is the last good checkpoint; continue with a lower learning rate: byol pretrain --resume run --lr 5e\+29, or raise --warmup-epochs$/ },
      { args: ['pretrain', '--resume', 'run', '--lr', '0.2'], code: 0, says: /resuming run at step [45]\/16[\s\S]*changed: lr null → 0\.2[\s\S]*done: 16 steps/ },
    ],
  },
  {
    name: 'a torn last line of metrics.jsonl (a crash, a full disk) is dropped and said; a damaged line elsewhere is named',
    steps: () => [
      { args: ['pretrain', dataset, '--out', 'run', ...tiny(2), '--knn-every', '0'], code: 0, says: /done: 16 steps/ },
      { shell: `head -c -25 run/metrics.jsonl > m && cat m > run/metrics.jsonl && ${cli('pretrain --resume run')}`, code: 0, says: /run\/metrics\.jsonl: dropped its last line, cut short \(\d+ bytes; a write was interrupted\)/ },
      { shell: `sed -i '3s/.*/{oops/' run/metrics.jsonl && ${cli('pretrain --resume run')}`, code: 2, says: /^byol: run\/metrics\.jsonl: line 3 is not a metrics record; fix or delete that line, then resume again$/ },
    ],
  },
  {
    name: 'SIGTERM saves a checkpoint like Ctrl-C (exit 143) and the run resumes to the end',
    steps: () => [
      { args: ['pretrain', dataset, '--out', 'run', ...tiny(2), '--log-every', '1', '--knn-every', '0'], code: 143, says: /stopped at step (5|6)\/16; checkpoint run\/checkpoints\/step-0000000(5|6)\.byol; continue with: byol pretrain --resume run/, when: /step 5\/16/, signal: 'SIGTERM' },
      { args: ['pretrain', '--resume', 'run'], code: 0, says: /done: 16 steps/ },
    ],
  },
  {
    name: '--resume continues on the run\'s own backend, and says so; --backend overrides it',
    steps: () => [
      { args: ['pretrain', dataset, '--out', 'run', ...tiny(2), '--log-every', '1', '--knn-every', '0'], code: 130, says: /stopped at step/, when: /step 3\/16/, signal: 'SIGINT' },
      { args: ['pretrain', '--resume', 'run'], code: 0, says: /resuming run at step \d+\/16 .*; backend cpu \(the run's; --backend to change\)/ },
    ],
    check: (w) => {
      const record = JSON.parse(readFileSync(join(w, 'run', 'config.json'), 'utf8')) as { backend: unknown; resumes: { backend: unknown }[] };
      assert.deepEqual(record.backend, { name: 'cpu', precision: 'fp32' });
      assert.deepEqual(record.resumes[0]!.backend, { name: 'cpu', precision: 'fp32' });
    },
  },
  {
    name: 'a damaged newest checkpoint: --resume says so and continues from the one before',
    steps: () => [
      { args: ['pretrain', dataset, '--out', 'run', ...tiny(2), '--checkpoint-every', '4', '--knn-every', '0', '--log-every', '1'], code: 130, says: /stopped at step [67]\/16/, when: /step 6\/16/ },
      { shell: `truncate -s 1000 run/checkpoints/$(ls run/checkpoints | tail -1) && ${cli('pretrain --resume run')}`, code: 0, says: /step-0000000[67]\.byol: truncated header; trying the checkpoint before it[\s\S]*resuming run at step 4\/16[\s\S]*done: 16 steps/ },
    ],
  },
  {
    name: 'a run folder of the previous byol (no marker, the backend as a string) resumes on its backend and is refused as an export folder',
    prepare: (w) => {
      rmSync(join(w, 'base', '.byol-output.json'));
      const path = join(w, 'base', 'config.json');
      writeFileSync(path, JSON.stringify({ ...JSON.parse(readFileSync(path, 'utf8')), backend: 'cpu' }));
    },
    steps: () => [
      { args: ['pretrain', '--resume', 'base'], code: 0, says: /resuming base at step 8\/8 .*; backend cpu \(the run's; --backend to change\)[\s\S]*done: 8 steps/ },
      { args: ['export', 'base', '--out', 'base'], code: 2, says: /^byol: base: not empty \(\d+ entries: .*\) and not made by byol/ },
    ],
    keep: ['base/checkpoints'],
  },
  {
    name: 'a checkpoint written by a newer byol is named as such (format and run metadata)',
    prepare: (w) => {
      const bytes = readFileSync(join(w, 'base', 'checkpoints', 'step-00000008.byol'));
      const text = bytes.toString('latin1');
      writeFileSync(join(w, 'format2.byol'), Buffer.from(text.replace('"format":1', '"format":2'), 'latin1'));
      writeFileSync(join(w, 'meta2.byol'), Buffer.from(text.replace('"byolRun":1', '"byolRun":2'), 'latin1'));
    },
    steps: () => [
      { args: ['eval', 'knn', 'format2.byol', ...cpu], code: 2, says: /^byol: format2\.byol: written by a newer byol \(checkpoint format 2; this version reads format 1\): upgrade byol to read it$/ },
      { args: ['export', 'meta2.byol', '--out', 'm'], code: 2, says: /^byol: meta2\.byol: written by a newer byol \(run metadata version 2; this version reads 1\)/ },
    ],
    keep: ['format2.byol', 'meta2.byol'],
  },

  // ------------------------------------------------------------ bad input named, not absorbed
  {
    name: 'CIFAR-10 data_batch_1.bin cut exactly at a record boundary is named with the official size',
    prepare: (w) => cifarFiles(join(w, 'c10'), { 'data_batch_1.bin': 9000, 'data_batch_2.bin': 10_000, 'data_batch_3.bin': 10_000, 'data_batch_4.bin': 10_000, 'data_batch_5.bin': 10_000, 'test_batch.bin': 10_000 }),
    steps: () => [{ args: ['pretrain', 'cifar10:c10', '--out', 'run', ...cpu], code: 2, says: /^byol: c10\/data_batch_1\.bin: 9,000 CIFAR-10 records \(27,657,000 bytes\); the official file has 10,000 \(30,730,000 bytes\) — truncated\?/ }],
    check: (w) => assert.equal(existsSync(join(w, 'run')), false, 'nothing written'),
  },
  {
    name: 'a CIFAR-10 test_batch.bin with an extra record, and an STL-10 file of the wrong size, are named',
    prepare: (w) => {
      cifarFiles(join(w, 'c10'), { 'test_batch.bin': 10_001 });
      mkdirSync(join(w, 'stl'));
      writeFileSync(join(w, 'stl', 'test_X.bin'), '');
      truncateSync(join(w, 'stl', 'test_X.bin'), 10 * 27648);
    },
    steps: () => [
      { args: ['embed', 'base', 'cifar10:c10@test', '--out', 'e.npy', ...cpu], code: 2, says: /^byol: c10\/test_batch\.bin: 10,001 CIFAR-10 records .* the official file has 10,000 .* too long\?/ },
      { args: ['embed', 'base', 'stl10:stl@test', '--out', 'e.npy', ...cpu], code: 2, says: /^byol: stl\/test_X\.bin: 10 STL-10 image records .* the official file has 8,000/ },
    ],
  },
  {
    name: 'Fashion-MNIST IDX files with fewer images than the official 60 000 are named',
    prepare: (w) => {
      mkdirSync(join(w, 'fm'));
      const header = Buffer.from([0, 0, 8, 3, 0, 0, 0, 100, 0, 0, 0, 28, 0, 0, 0, 28]);
      writeFileSync(join(w, 'fm', 'train-images-idx3-ubyte.gz'), gzipSync(Buffer.concat([header, Buffer.alloc(100 * 784)])));
      writeFileSync(join(w, 'fm', 'train-labels-idx1-ubyte.gz'), gzipSync(Buffer.concat([Buffer.from([0, 0, 8, 1, 0, 0, 0, 100]), Buffer.alloc(100)])));
    },
    steps: () => [{ args: ['pretrain', 'fashion-mnist:fm', '--out', 'run', ...cpu], code: 2, says: /^byol: fm\/train-images-idx3-ubyte\.gz: holds \[100,28,28\] images; fashion-mnist-train has 60,000 of 28×28/ }],
  },
  {
    name: 'a truncated or garbled JPEG in a folder stops the run naming it; --resume --skip-bad leaves it out, said',
    prepare: async (w) => {
      await imageClasses(join(w, 'pics'));
      const good = readFileSync(join(w, 'pics', 'red', '0.jpg'));
      writeFileSync(join(w, 'pics', 'red', '0.jpg'), good.subarray(0, Math.floor(good.length * 0.6)));
      const garbled = Buffer.from(readFileSync(join(w, 'pics', 'green', '1.jpg')));
      for (let i = Math.floor(garbled.length * 0.4); i < garbled.length * 0.7; i++) garbled[i] = (garbled[i]! * 31 + 7) & 255;
      writeFileSync(join(w, 'pics', 'green', '1.jpg'), garbled);
    },
    steps: () => [
      // 36 images in batches of 6: every image is read in the epoch.
      // The garbled file's message is libjpeg's, and not always the same one (seen: "Corrupt JPEG data", and once in a
      // full suite run "Unsupported marker type 0x07"); what matters is that the run names the file.
      { args: ['pretrain', 'folder:pics', '--out', 'run', ...tinyFolder(1, 6), '--holdout', '0'], code: 2, says: /^byol: pics\/(red\/0\.jpg: cannot decode \(.*premature end.*\)|green\/1\.jpg: cannot decode \(.+\)); the run stopped at step \d+; .*byol pretrain --resume run --skip-bad$/ },
      { args: ['pretrain', '--resume', 'run', '--skip-bad'], code: 0, says: /^(?=[\s\S]*skipped pics\/red\/0\.jpg: cannot decode \(.*premature end of JPEG image)(?=[\s\S]*skipped pics\/green\/1\.jpg: cannot decode \(.+\))[\s\S]*done: 6 steps/ },
    ],
    keep: ['pics'],
  },
  {
    name: 'a labelled folder run has kNN on a held-out part; eval --dataset folder:X works; an unlabelled folder says why no kNN',
    prepare: async (w) => {
      await imageClasses(join(w, 'pics'));
      mkdirSync(join(w, 'flat'));
      for (const f of readdirSync(join(w, 'pics', 'red'))) writeFileSync(join(w, 'flat', f), readFileSync(join(w, 'pics', 'red', f)));
    },
    steps: () => [
      { args: ['pretrain', 'folder:pics', '--out', 'run', ...tinyFolder(1, 8)], code: 0, says: /run run: folder:pics@train, (3\d) images[\s\S]*kNN: \d+ images held out of pretraining \(10 %, chosen by a hash of their paths\)[\s\S]*epoch 1: kNN top-1/ },
      { args: ['eval', 'knn', 'run', '--dataset', 'folder:pics', ...cpu], code: 0, says: /kNN on folder:pics@train \(\d+\) → folder:pics@test \(\d+\)/ },
      { args: ['eval', 'knn', 'run', ...cpu], code: 0, says: /kNN on folder:pics@train/ },
      { args: ['pretrain', 'folder:flat', '--out', 'run2', ...tinyFolder(1, 4)], code: 0, says: /no kNN: flat has no labels \(put the images in class sub-folders to get one\)/ },
    ],
    keep: ['pics', 'flat'],
  },
];

describe('the bad-input and fault corpus, through the CLI', { concurrency: 2 }, () => {
  for (const c of cases) {
    it(c.name, { skip: skipNoData || c.skip || false }, async () => {
      const w = mkdtempSync(join(root, 'case-'));
      // Each case reads its own copy of the finished run, as `base` in its folder.
      cpSync(base, join(w, 'base'), { recursive: true });
      await c.prepare?.(w);
      const keep = (c.keep ?? []).map((p) => join(w, p));
      const before = snapshot(...keep);
      const ran: Ran[] = [];
      for (const step of c.steps(w)) {
        const what = step.shell ?? step.args!.join(' ');
        const r = await byol(step.args ?? [], { cwd: w, timeoutMs: 90_000, ...(step.shell ? { shell: step.shell } : {}), ...(step.when ? { when: step.when, signal: step.signal ?? 'SIGINT' } : {}) });
        ran.push(r);
        const code = r.code ?? (r.signal === 'SIGKILL' ? 137 : -1);
        assert.equal(code, step.code, `${what}: exit ${code}\n${r.out}\n${r.err}`);
        if (step.code !== 0 && !step.when) {
          // A refusal or failure: its one line on stderr (a shell line's own output may come before it).
          if (!step.shell) assert.equal(r.err.trim().split('\n').length, 1, `${what}: one line, got ${r.err}`);
          assert.match(r.err.trim().split('\n').pop()!, step.says, what);
        } else {
          assert.match(`${r.out}\n${r.err}`, step.says, what);
        }
      }
      const after = snapshot(...keep);
      assert.deepEqual(lost(before, after), [], 'nothing lost');
      if (c.unchanged) assert.deepEqual([...after.keys()].sort(), [...before.keys()].sort(), 'nothing added');
      await c.check?.(w, ran);
    });
  }
});

test('readers hammering a live run (every step checkpointed, one kept) never disturb it, and always read a whole checkpoint', { skip: skipNoData }, async () => {
  const w = mkdtempSync(join(root, 'live-'));
  const run = join(w, 'run');
  const training = byol(['pretrain', dataset, '--out', run, ...tiny(4), '--checkpoint-every', '1', '--keep', '1', '--knn-every', '0', '--log-every', '1']);
  let finished = false;
  void training.then(() => (finished = true));
  // In this process: list and read the newest checkpoint as fast as possible (a listing once deleted the writer's
  // temporary file, and the trainer died at its rename).
  let reads = 0;
  const fast = (async () => {
    while (!finished) {
      if ((await listCheckpoints(run)).length > 0) {
        const { state } = await readNewestCheckpoint(run);
        assert.ok(state.step >= 1);
        reads++;
      }
      await new Promise((r) => setImmediate(r));
    }
  })();
  // And the CLI readers a user would run meanwhile, once the run has begun.
  while (!finished && !existsSync(join(run, 'metrics.jsonl'))) await new Promise((r) => setTimeout(r, 20));
  const cli: Ran[] = [];
  const readers = [
    (k: number) => ['export', run, '--out', join(w, `model${k}`)],
    (k: number) => ['plot', run, '--out', join(w, `plots${k}`)],
    (k: number) => ['embed', run, `${dataset}@test`, '--limit', '2', '--out', join(w, `e${k}-${cli.length}.npy`), ...cpu],
  ];
  // Three readers at a time, each command in turn, until the run ends.
  await Promise.all(
    [0, 1, 2].map(async (k) => {
      for (let i = k; !finished; i++) cli.push(await byol(readers[i % readers.length]!(k)));
    }),
  );
  const t = await training;
  await fast;
  assert.equal(t.code, 0, t.err);
  assert.match(t.out, /done: 32 steps/);
  assert.ok(reads > 10, `${reads} in-process reads`);
  for (const r of cli) assert.ok(r.code === 0 || /a folder without checkpoints yet \(process \d+ is training it/.test(r.err), r.err);
  assert.ok(cli.filter((r) => r.code === 0).length >= 1, 'at least one CLI reader read the live run');
  const { meta } = await learnerFromCheckpoint(run).then((x) => (x.learner.dispose(), x));
  assert.equal(meta.step, 32);
  assert.deepEqual(readdirSync(join(run, 'checkpoints')), ['step-00000032.byol']);
});

test('a folder that changes under a run: a vanished image stops it naming the file, --skip-bad continues; added images are said, not used', { skip: skipNoData }, async () => {
  const w = mkdtempSync(join(root, 'changing-'));
  await imageClasses(join(w, 'pics'), 16);
  const pics = snapshot(join(w, 'pics'));
  // 48 images in batches of 8: 6 steps an epoch. After step 3 one image goes and one comes.
  const args = ['pretrain', 'folder:pics', '--out', 'run', ...tinyFolder(4, 8), '--holdout', '0', '--checkpoint-every', '2', '--log-every', '1', '--knn-every', '0'];
  const change = () => {
    renameSync(join(w, 'pics', 'red', '3.jpg'), join(w, 'red-3.jpg'));
    writeFileSync(join(w, 'pics', 'red', 'new.jpg'), readFileSync(join(w, 'red-3.jpg')));
  };
  const first = await byol(args, { cwd: w, when: /step 3\/24/, act: change });
  assert.equal(first.code, 2, first.out + first.err);
  assert.match(first.err.trim(), /^byol: pics\/red\/3\.jpg: missing \(the folder changed since it was listed\?\); the run stopped at step \d+; its last checkpoint is run\/checkpoints\/step-\d+\.byol; fix or restore the file and continue with byol pretrain --resume run, or leave such files out: byol pretrain --resume run --skip-bad$/);
  const again = await byol(['pretrain', '--resume', 'run'], { cwd: w });
  assert.equal(again.code, 2, again.err);
  assert.match(again.out, /1 image added to the folder since the run started is not used \(a run keeps its files\); start a new run to train on them/);
  const skipping = await byol(['pretrain', '--resume', 'run', '--skip-bad'], { cwd: w });
  assert.equal(skipping.code, 0, skipping.err);
  assert.match(skipping.out, /changed: skipBad false → true[\s\S]*skipped pics\/red\/3\.jpg: missing[\s\S]*done: 24 steps/);
  const files = JSON.parse(readFileSync(join(w, 'run', 'files.json'), 'utf8')) as string[];
  assert.equal(files.length, 48);
  assert.ok(!files.includes(join('red', 'new.jpg')));
  // The folder itself: only the user's own change.
  assert.deepEqual(lost(pics, snapshot(join(w, 'pics'))), [join('pics', 'red', '3.jpg')]);
});

test('Ctrl-C inside an evaluation stops at once with the epoch\'s checkpoint; --resume runs that evaluation first', { skip: skipNoData }, async () => {
  const w = mkdtempSync(join(root, 'eval-stop-'));
  // A large kNN bank makes the evaluation long enough to be interrupted.
  const args = ['pretrain', dataset, '--out', 'run', '--limit', '256', '--epochs', '2', '--batch', '32', '--projector-hidden', '64', '--projector-out', '32', '--predictor-hidden', '64', '--knn-bank', '20000', '--knn-test', '2000', '--encoder', enc, ...cpu, '--log-every', '8'];
  const stopped = await byol(args, { cwd: w, when: /step 8\/16/, signal: 'SIGINT' });
  assert.equal(stopped.code, 130, stopped.err);
  assert.match(stopped.out, /stopped at step 8\/16; checkpoint run\/checkpoints\/step-00000008\.byol/);
  assert.doesNotMatch(stopped.out, /epoch 1: kNN/);
  const resumed = await byol(['pretrain', '--resume', 'run', '--knn-bank', '400', '--knn-test', '100'], { cwd: w });
  assert.equal(resumed.code, 0, resumed.err);
  assert.match(resumed.out, /resuming run at step 8\/16[\s\S]*\nepoch 1: kNN top-1 [\d.]+ %[\s\S]*epoch 2: kNN top-1[\s\S]*done: 16 steps/);
  const knn = readFileSync(join(w, 'run', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type: string; step: number }).filter((x) => x.type === 'knn');
  assert.deepEqual(knn.map((x) => x.step), [8, 16]);
});

test('Ctrl-C during byol eval quits at once and writes nothing', { skip: skipNoData }, async () => {
  const before = snapshot(base);
  const started = Date.now();
  const r = await byol(['eval', 'knn', base, '--baseline', 'random', '--train', '30000', '--test', '5000', ...cpu], { signalAfterMs: 1500 });
  assert.ok(r.code === 130 || r.signal === 'SIGINT', `${r.code} ${r.signal} ${r.err}`);
  assert.ok(Date.now() - started < 20_000, 'no waiting for the evaluation to end');
  assert.deepEqual(snapshot(base), before);
});

test('a second pretrain on a live run is refused naming the training process, as is --resume; the lock goes with it', { skip: skipNoData }, async () => {
  const w = mkdtempSync(join(root, 'busy-'));
  let release = () => undefined as void;
  const checked = new Promise<void>((r) => (release = r));
  const first = byol(['pretrain', dataset, '--out', 'run', ...tiny(50), '--log-every', '1', '--knn-every', '0'], { cwd: w, signalOn: checked });
  for (let i = 0; i < 800 && !existsSync(join(w, 'run', 'run.lock')); i++) await new Promise((r) => setTimeout(r, 25));
  const again = await byol(['pretrain', dataset, '--out', 'run', ...tiny(4)], { cwd: w });
  const resume = await byol(['pretrain', '--resume', 'run'], { cwd: w });
  release();
  const done = await first;
  assert.equal(done.code, 130, done.err);
  for (const r of [again, resume]) {
    assert.equal(r.code, 2, r.err);
    assert.match(r.err.trim(), /^byol: run: is being trained by process \d+ \(since .*\); wait for it or stop it \(Ctrl-C saves a checkpoint\)$/);
  }
  assert.equal(existsSync(join(w, 'run', 'run.lock')), false, 'the lock goes with the process');
  const resumed = await byol(['pretrain', '--resume', 'run', '--knn-every', '0'], { cwd: w, when: /resuming run/, signal: 'SIGINT' });
  assert.equal(resumed.code, 130, resumed.err);
});
