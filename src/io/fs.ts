/**
 * File-system helpers for everything byol writes: a folder maker that cannot hang, and one mapping from the
 * operating system's error codes to a user error that names the path and says what is wrong.
 */
import { mkdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { ByolError } from '../errors.js';

/** A Node file-system error (it carries `code`, e.g. ENOSPC). */
export function isFsError(e: unknown): e is NodeJS.ErrnoException {
  return e instanceof Error && typeof (e as NodeJS.ErrnoException).code === 'string' && /^E[A-Z]+$/.test((e as NodeJS.ErrnoException).code!);
}

const REASONS: Readonly<Record<string, string>> = {
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EFBIG: 'file too large for this file system',
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOTDIR: 'a part of the path is a file, not a folder',
  EISDIR: 'it is a folder',
  ENAMETOOLONG: 'name too long',
  ELOOP: 'too many symbolic links',
  EEXIST: 'already exists',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files',
  EIO: 'input/output error',
  EBUSY: 'busy',
  ENOENT: 'no such file or folder',
};

/** A short reason for an error code: `no space left on the device (ENOSPC)`. */
export function fsReason(e: NodeJS.ErrnoException): string {
  const code = e.code ?? 'error';
  return `${REASONS[code] ?? e.message.split('\n')[0]!.replace(/^[A-Z]+: /, '')} (${code})`;
}

/**
 * The user error for a failed write of `path`: code WRITE_FAILED, one line naming the path, what byol tried to do
 * and why it failed. `hint` is appended (e.g. what is intact, how to continue).
 */
export function writeFailed(path: string, e: NodeJS.ErrnoException, doing = 'write', hint = ''): ByolError {
  return new ByolError('WRITE_FAILED', `${path}: cannot ${doing}: ${fsReason(e)}${hint ? `; ${hint}` : ''}`, path);
}

/**
 * Makes folder `dir` and any missing parents. Unlike `mkdir(dir, { recursive: true })` — which under /proc and
 * similar file systems retries forever (ENOENT each time) — each missing folder is created once, from the top, and
 * the first refusal is a WRITE_FAILED error naming that folder. A path through a file is named too.
 */
export async function ensureDir(dir: string): Promise<void> {
  const missing: string[] = [];
  for (let p = resolve(dir); ; ) {
    let isDir: boolean;
    try {
      isDir = (await stat(p)).isDirectory();
    } catch (e) {
      if (!isFsError(e)) throw e;
      if (e.code === 'ENOENT' && dirname(p) !== p) {
        missing.push(p);
        p = dirname(p);
        continue;
      }
      throw writeFailed(p, e, 'use it as a folder');
    }
    if (!isDir) throw new ByolError('WRITE_FAILED', `${p}: is a file, not a folder; cannot create ${resolve(dir)}`, p);
    break;
  }
  for (const m of missing.reverse()) {
    try {
      await mkdir(m);
    } catch (e) {
      if (isFsError(e) && e.code === 'EEXIST' && (await stat(m).then((s) => s.isDirectory(), () => false))) continue;
      if (isFsError(e)) throw writeFailed(m, e, 'create the folder', e.code === 'ENOENT' ? 'this file system does not hold new folders' : '');
      throw e;
    }
  }
}
