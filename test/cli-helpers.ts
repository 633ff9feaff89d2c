/**
 * Helpers for the tests that run the `byol` CLI as child processes: a runner, a small MLP encoder folder (fast
 * and bit-reproducible on the cpu backend), the offline grey dataset, and snapshots of folders to prove that
 * nothing on disk was lost.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tfl from '@tensorflow/tfjs-layers';
import { findOfflineGreyDataset, useBackend } from '../src/node.js';
import { saveLayersModelDir } from '../src/io/model-dir.js';

/** This build's CLI. */
export const ownMain = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
/** The CLI under test: this build's, or another's named by BYOL_TEST_CLI (to check that a test fails on older code). */
export const main = process.env['BYOL_TEST_CLI'] ?? ownMain;
export const offline = findOfflineGreyDataset();
export const dataset = offline?.name.startsWith('Fashion') ? 'fashion-mnist' : 'mnist';
export const skipNoData = offline ? false : 'no offline MNIST / Fashion-MNIST';

export interface Ran {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly out: string;
  readonly err: string;
}

/** Runs the CLI synchronously. */
export function byolSync(args: readonly string[], cwd?: string): Ran {
  const r = spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', timeout: 240_000, ...(cwd ? { cwd } : {}) });
  return { code: r.status, signal: r.signal, out: r.stdout, err: r.stderr };
}

export interface RunOptions {
  readonly cwd?: string;
  /** Once stdout matches `when`: call `act` if given, else send `signal` (default SIGINT). */
  readonly when?: RegExp;
  readonly signal?: NodeJS.Signals;
  readonly act?: () => void;
  /** Send `signal` after this many milliseconds. */
  readonly signalAfterMs?: number;
  /** Send `signal` when this settles. */
  readonly signalOn?: Promise<unknown>;
  readonly env?: NodeJS.ProcessEnv;
  readonly timeoutMs?: number;
  /** A command line run through `sh -c` instead (e.g. inside `unshare`); `args` are then ignored. */
  readonly shell?: string;
  /** The CLI's script (default: the one under test). */
  readonly main?: string;
}

/** Runs the CLI asynchronously (so that several run at once), optionally signalling it when its output matches. */
export function byol(args: readonly string[], o: RunOptions = {}): Promise<Ran> {
  return new Promise((resolve) => {
    const child = o.shell
      ? spawn('sh', ['-c', o.shell], { ...(o.cwd ? { cwd: o.cwd } : {}), env: o.env ?? process.env })
      : spawn(process.execPath, [o.main ?? main, ...args], { ...(o.cwd ? { cwd: o.cwd } : {}), env: o.env ?? process.env });
    let out = '';
    let err = '';
    let sent = false;
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 240_000);
    const later = o.signalAfterMs === undefined ? null : setTimeout(() => child.kill(o.signal ?? 'SIGINT'), o.signalAfterMs);
    void o.signalOn?.finally(() => child.exitCode === null && child.kill(o.signal ?? 'SIGINT'));
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (o.when && !sent && o.when.test(out)) {
        sent = true;
        if (o.act) o.act();
        else child.kill(o.signal ?? 'SIGINT');
      }
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (later) clearTimeout(later);
      resolve({ code, signal, out, err });
    });
  });
}

let mlpDir: Promise<string> | null = null;

/** A small MLP encoder saved as a tfjs model folder under `root` (made once per process). */
export function mlpEncoder(root: string): Promise<string> {
  mlpDir ??= (async () => {
    await useBackend('cpu');
    const model = tfl.sequential({
      layers: [
        tfl.layers.flatten({ inputShape: [28, 28, 1] }),
        tfl.layers.dense({ units: 64, useBias: false, kernelInitializer: tfl.initializers.glorotUniform({ seed: 1 }) }),
        tfl.layers.batchNormalization({}),
        tfl.layers.reLU(),
      ],
    });
    const dir = join(root, 'mlp-encoder');
    await saveLayersModelDir(model, dir);
    model.dispose();
    return dir;
  })();
  return mlpDir;
}

/** Flags of a tiny run: 256 images, batches of 32 (8 steps an epoch), small heads, a small kNN. */
export const sized = (epochs: number, projector = 64) => ['--limit', '256', '--epochs', String(epochs), '--batch', '32', '--projector-hidden', String(projector), '--projector-out', '32', '--predictor-hidden', '64', '--knn-bank', '400', '--knn-test', '100'];

/** Every file and link under `paths` (recursively), with a digest of its content: what a user would miss. */
export function snapshot(...paths: string[]): Map<string, string> {
  const out = new Map<string, string>();
  const visit = (p: string, base: string) => {
    if (!existsSync(p) && !isLink(p)) return;
    const st = lstatSync(p);
    const key = relative(base, p) || '.';
    if (st.isSymbolicLink()) out.set(key, `link:${readlinkSync(p)}`);
    else if (st.isDirectory()) {
      out.set(key, 'dir');
      for (const e of readdirSync(p)) visit(join(p, e), base);
    } else out.set(key, createHash('sha1').update(readFileSync(p)).digest('hex'));
  };
  for (const p of paths) visit(p, join(p, '..'));
  return out;
}

function isLink(p: string): boolean {
  try {
    return lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}

/** The entries of `before` missing or changed in `after` (additions are allowed). */
export function lost(before: Map<string, string>, after: Map<string, string>): string[] {
  return [...before].filter(([k, v]) => after.get(k) !== v).map(([k]) => k);
}

/** Whether this machine lets a test mount a small file system of its own (a mount namespace: root, or user namespaces). */
export const mountNamespace: string | null = (() => {
  for (const cmd of [['unshare', '-m'], ['unshare', '-rm']]) {
    const r = spawnSync(cmd[0]!, [...cmd.slice(1), 'sh', '-c', 'd=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs "$d" && umount "$d" && rmdir "$d"'], { encoding: 'utf8' });
    if (r.status === 0) return cmd.join(' ');
  }
  return null;
})();
