import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { ensureDir, isFsError, writeFailed } from './fs.js';

/** Temporary files this process is writing now, removed by {@link removePendingTemporariesSync} on a signal. */
const pending = new Set<string>();

/**
 * The temporary name for a write of `path`: `path.PID-RANDOM.tmp`. The writer's process id is in the name so that
 * only the process that owns a folder (and knows the writer is gone) ever removes a temporary file: a reader that
 * lists a folder never touches another process's write in progress.
 */
export function temporaryName(path: string): string {
  return `${path}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
}

/** The process id in a temporary name made by {@link temporaryName}, or null for any other name. */
export function temporaryWriter(name: string): number | null {
  const m = /\.(\d+)-[0-9a-f]{8}\.tmp$/.exec(basename(name));
  return m ? Number(m[1]) : null;
}

/** Whether process `pid` is running (on this machine). */
export function processAlive(pid: number): boolean {
  if (!(Number.isInteger(pid) && pid > 0)) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes the temporary files of writes still in progress (for a process that exits on a signal). */
export function removePendingTemporariesSync(): void {
  for (const tmp of pending) rmSync(tmp, { force: true, recursive: true });
  pending.clear();
}

/** Registers a temporary path (a file or folder) for {@link removePendingTemporariesSync}; returns the release. */
export function trackTemporary(path: string): () => void {
  pending.add(path);
  return () => pending.delete(path);
}

/**
 * Writes `data` to `path` atomically: to a temporary file in the same folder (flushed to disk), then a rename, so
 * that `path` holds either its old content or all of the new one, never a part. Missing folders are made. A failure
 * (a full or read-only disk, …) is a WRITE_FAILED error naming `path`; the old content is then intact and the
 * temporary file is gone.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  await ensureDir(dirname(path));
  const tmp = temporaryName(path);
  const release = trackTemporary(tmp);
  try {
    const file = await open(tmp, 'wx');
    try {
      await file.writeFile(data);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw isFsError(e) ? writeFailed(path, e, 'write', 'nothing was replaced') : e;
  } finally {
    release();
  }
}
