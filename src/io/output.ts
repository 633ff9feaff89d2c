/**
 * Output locations that never destroy what byol did not create. A folder byol writes carries a marker file
 * (`.byol-output.json`) naming what kind of output it is and which of its entries byol wrote; byol replaces only
 * those, each atomically, and refuses a folder that holds anything else unless told `overwrite` — and even then it
 * only adds its own files beside the others and never replaces a file it did not write.
 */
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ByolError } from '../errors.js';
import { writeFileAtomic } from './atomic.js';
import { ensureDir, isFsError, writeFailed } from './fs.js';

export const OUTPUT_MARKER = '.byol-output.json';

/** What a byol output folder holds: a pretraining run, an exported model, a run's plots, a dataset download, an ablation, a search index. */
export type OutputKind = 'run' | 'export' | 'plots' | 'download' | 'ablation' | 'index';

const KIND_NAMES: Record<OutputKind, string> = { run: 'a byol run', export: 'a byol export', plots: "byol's plots", download: 'a byol dataset download', ablation: 'a byol ablation', index: 'a byol search index' };

interface Marker {
  readonly madeBy: 'byol';
  readonly kind: OutputKind;
  /** Entries (file or folder names) that byol wrote here. */
  readonly files: readonly string[];
}

async function readMarker(dir: string): Promise<Marker | null> {
  try {
    const m = JSON.parse(await readFile(join(dir, OUTPUT_MARKER), 'utf8')) as Partial<Marker>;
    return m.madeBy === 'byol' && typeof m.kind === 'string' && Array.isArray(m.files) ? (m as Marker) : null;
  } catch {
    return null;
  }
}

/** The kind of byol output folder `dir` is, from its marker, or null (no marker, or not a folder). */
export async function outputKindOf(dir: string): Promise<OutputKind | null> {
  return (await readMarker(dir))?.kind ?? null;
}

export interface ClaimOptions {
  readonly kind: OutputKind;
  /** Entry names the command is about to write: checked for conflicts before anything is written, then byol's. */
  readonly names: readonly string[];
  /** Write into a non-empty folder byol did not make (adding files beside the others). Default false. */
  readonly overwrite?: boolean;
  /** The flag that says `overwrite`, for messages. Default `--overwrite`. */
  readonly overwriteFlag?: string;
  /**
   * For folders written before byol had markers: given the folder's entries, the ones byol wrote if the folder is
   * recognizably of this kind, else null.
   */
  readonly legacy?: (entries: readonly string[], dir: string) => Promise<readonly string[] | null>;
}

/** A folder claimed for byol's output: writes only its own entries, atomically. */
export class OutputDir {
  private constructor(
    readonly path: string,
    readonly kind: OutputKind,
    private readonly owned: Set<string>,
    /** True when the folder held an earlier output of the same kind (whose files may be replaced). */
    readonly reused: boolean,
  ) {}

  /**
   * Claims `dir` for an output of `kind`. It may be missing (it is made), empty, or an earlier byol output of the same
   * kind; a non-empty folder of anything else is refused with OUTPUT_EXISTS (nothing written) unless `overwrite`. A
   * name in `names` that exists and that byol did not write is refused in every case. A file at `dir`, or a location
   * that cannot be written, gives OUTPUT_EXISTS or WRITE_FAILED naming it.
   */
  static async claim(dir: string, options: ClaimOptions): Promise<OutputDir> {
    const { kind } = options;
    const flag = options.overwriteFlag ?? '--overwrite';
    let isDir: boolean | null;
    try {
      isDir = (await stat(dir)).isDirectory();
    } catch (e) {
      if (!isFsError(e)) throw e;
      if (e.code !== 'ENOENT') throw writeFailed(dir, e, 'use it as an output folder');
      isDir = null;
    }
    if (isDir === false) throw new ByolError('OUTPUT_EXISTS', `${dir}: is a file; byol writes a folder there (choose another path)`, dir);
    let owned = new Set<string>();
    let reused = false;
    if (isDir) {
      let entries: string[];
      try {
        entries = (await readdir(dir)).filter((e) => e !== OUTPUT_MARKER);
      } catch (e) {
        throw isFsError(e) ? writeFailed(dir, e, 'list the folder') : e;
      }
      const marker = await readMarker(dir);
      if (marker && marker.kind !== kind) {
        throw new ByolError('OUTPUT_EXISTS', `${dir}: holds ${KIND_NAMES[marker.kind]}, not ${KIND_NAMES[kind]}; choose another folder`, dir);
      }
      const legacy = !marker && entries.length > 0 && options.legacy ? await options.legacy(entries, dir) : null;
      if (marker || legacy) {
        owned = new Set(marker ? marker.files : legacy);
        reused = true;
      } else if (entries.length > 0 && !options.overwrite) {
        const sample = entries.slice(0, 3).map((e) => JSON.stringify(e)).join(', ');
        throw new ByolError(
          'OUTPUT_EXISTS',
          `${dir}: not empty (${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}: ${sample}${entries.length > 3 ? ', …' : ''}) and not made by byol; ` +
            `choose a new or empty folder, or pass ${flag} to add byol's files beside them (none of them is replaced)`,
          dir,
        );
      }
      const clash = options.names.find((n) => entries.includes(n) && !owned.has(n));
      if (clash !== undefined) {
        throw new ByolError('OUTPUT_EXISTS', `${join(dir, clash)}: exists and byol did not write it; move it away or choose another folder (nothing was written)`, join(dir, clash));
      }
    } else {
      await ensureDir(dir);
    }
    // The names about to be written are byol's from now on (an interrupted write leaves them claimed, not foreign).
    for (const n of options.names) owned.add(n);
    const out = new OutputDir(dir, kind, owned, reused);
    await out.saveMarker();
    return out;
  }

  /** Whether byol wrote entry `name` here. */
  owns(name: string): boolean {
    return this.owned.has(name);
  }

  private saveMarker(): Promise<void> {
    const m: Marker = { madeBy: 'byol', kind: this.kind, files: [...this.owned].sort() };
    return writeFileAtomic(join(this.path, OUTPUT_MARKER), `${JSON.stringify(m, null, 2)}\n`);
  }

  /** Records `name` as byol's (before it is written, so that an interrupted write leaves it claimed). */
  async adopt(name: string): Promise<string> {
    const path = join(this.path, name);
    if (!this.owned.has(name)) {
      const exists = await stat(path).then(() => true, () => false);
      if (exists) throw new ByolError('OUTPUT_EXISTS', `${path}: exists and byol did not write it; move it away or choose another folder`, path);
      this.owned.add(name);
      await this.saveMarker();
    }
    return path;
  }

  /** Writes entry `name` atomically (temporary file + rename); refuses a name byol did not write. */
  async write(name: string, data: Uint8Array | string): Promise<string> {
    const path = await this.adopt(name);
    await writeFileAtomic(path, data);
    return path;
  }

  /** Makes sub-folder `name` (byol's). */
  async folder(name: string): Promise<string> {
    const path = await this.adopt(name);
    await ensureDir(path);
    return path;
  }

  /** Removes entry `name` if byol wrote it; does nothing otherwise. */
  async remove(name: string): Promise<void> {
    if (!this.owned.has(name)) return;
    await rm(join(this.path, name), { force: true, recursive: true });
    this.owned.delete(name);
    await this.saveMarker();
  }
}

/**
 * Checks that `path` may be written as a single output file: missing (its folder is made), or an existing file when
 * `overwrite` (the user named it). A folder there, or an existing file without `overwrite`, gives OUTPUT_EXISTS.
 */
export async function claimOutputFile(path: string, overwrite: boolean, flag = '--overwrite'): Promise<void> {
  let isDir: boolean;
  try {
    isDir = (await stat(path)).isDirectory();
  } catch (e) {
    if (!isFsError(e)) throw e;
    if (e.code !== 'ENOENT') throw writeFailed(path, e, 'use it as an output file');
    const parent = join(path, '..');
    await ensureDir(parent);
    return;
  }
  if (isDir) throw new ByolError('OUTPUT_EXISTS', `${path}: is a folder; name a file`, path);
  if (!overwrite) throw new ByolError('OUTPUT_EXISTS', `${path}: exists; pass ${flag} to replace it, or choose another name`, path);
}
