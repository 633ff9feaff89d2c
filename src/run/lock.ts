/**
 * The lock a training process holds on its run folder (`DIR/run.lock`): while it exists and names a live process,
 * no other `byol pretrain` starts or resumes the run, and only the lock's holder cleans the run's temporary files.
 * Readers (eval, export, embed, plot) take no lock: they read complete files only and write nothing into the run.
 */
import { readFileSync, rmSync } from 'node:fs';
import { open, readFile, rename, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ByolError } from '../errors.js';
import { processAlive } from '../io/atomic.js';
import { isFsError, writeFailed } from '../io/fs.js';

export const LOCK_FILE = 'run.lock';

export interface LockInfo {
  readonly pid: number;
  readonly host: string;
  readonly startedAt: string;
  /** The process's start time in clock ticks since boot (Linux), to tell a reused process id from the holder. */
  readonly processStart: string | null;
}

function processStart(pid: number): string | null {
  try {
    // Field 22 of /proc/PID/stat, counted after the command name (which may hold spaces) closes with ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/** Whether the process a lock names still runs (a lock from another machine counts as live: it cannot be checked). */
export function lockHolderAlive(info: LockInfo): boolean {
  if (info.host !== hostname()) return true;
  if (!processAlive(info.pid)) return false;
  const now = processStart(info.pid);
  return info.processStart === null || now === null || now === info.processStart;
}

async function readLock(path: string): Promise<LockInfo | 'unreadable' | null> {
  try {
    const info = JSON.parse(await readFile(path, 'utf8')) as Partial<LockInfo>;
    return typeof info.pid === 'number' && typeof info.host === 'string' ? ({ startedAt: '?', processStart: null, ...info } as LockInfo) : 'unreadable';
  } catch (e) {
    return isFsError(e) && e.code === 'ENOENT' ? null : 'unreadable';
  }
}

/** The live process training in `runDir`, if any. */
export async function runLockHolder(runDir: string): Promise<LockInfo | null> {
  const info = await readLock(join(runDir, LOCK_FILE));
  return info && info !== 'unreadable' && lockHolderAlive(info) ? info : null;
}

export function inUseError(runDir: string, info: LockInfo, use = 'trained'): ByolError {
  const where = info.host === hostname() ? `process ${info.pid}` : `process ${info.pid} on ${info.host}`;
  return new ByolError(
    'RUN_IN_USE',
    `${runDir}: is being ${use} by ${where} (since ${info.startedAt}); wait for it or stop it${use === 'trained' ? ' (Ctrl-C saves a checkpoint)' : ''}` +
      `${info.host === hostname() ? '' : `, or delete ${join(runDir, LOCK_FILE)} if that process is gone`}`,
    runDir,
  );
}

/** A held run lock. */
export class RunLock {
  private held = true;
  private constructor(readonly path: string) {}

  /**
   * Takes the lock of `runDir`, or fails with RUN_IN_USE naming the live holder. A lock left by a process that is
   * gone (killed, crashed) is taken over. Between two processes racing for a stale lock, one wins.
   */
  static async acquire(runDir: string, shown = runDir, use = 'trained'): Promise<RunLock> {
    const path = join(runDir, LOCK_FILE);
    const mine: LockInfo = { pid: process.pid, host: hostname(), startedAt: new Date().toISOString(), processStart: processStart(process.pid) };
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const file = await open(path, 'wx');
        try {
          await file.writeFile(`${JSON.stringify(mine)}\n`);
        } finally {
          await file.close();
        }
        return new RunLock(path);
      } catch (e) {
        if (!isFsError(e)) throw e;
        if (e.code !== 'EEXIST') throw writeFailed(path, e, 'create the run lock');
      }
      const info = await readLock(path);
      if (info === null) continue; // released meanwhile
      if (info === 'unreadable') {
        // Being written this instant by another process, or torn by a crash: look again shortly.
        await new Promise((r) => setTimeout(r, 50));
        if (attempt < 3) continue;
      } else if (lockHolderAlive(info)) {
        throw inUseError(shown, info, use);
      }
      // Stale: move it aside (only one of several racing processes can), then check it was the stale one.
      const aside = `${path}.stale-${process.pid}`;
      try {
        await rename(path, aside);
      } catch (e) {
        if (isFsError(e) && e.code === 'ENOENT') continue;
        throw e;
      }
      const moved = await readLock(aside);
      if (moved && moved !== 'unreadable' && lockHolderAlive(moved)) {
        // Another process took the lock between our read and our rename: give it back.
        await rename(aside, path).catch(() => undefined);
        throw inUseError(shown, moved, use);
      }
      await rm(aside, { force: true });
    }
    throw new ByolError('RUN_IN_USE', `${shown}: could not take ${LOCK_FILE} (other processes keep taking it)`, runDir);
  }

  private ours(): boolean {
    try {
      return (JSON.parse(readFileSync(this.path, 'utf8')) as LockInfo).pid === process.pid;
    } catch {
      return false;
    }
  }

  /** Releases the lock (only if it is still this process's). */
  async release(): Promise<void> {
    if (!this.held) return;
    this.held = false;
    if (this.ours()) await rm(this.path, { force: true });
  }

  /** The same, synchronously (for exit handlers). */
  releaseSync(): void {
    if (!this.held) return;
    this.held = false;
    if (this.ours()) rmSync(this.path, { force: true });
  }
}
