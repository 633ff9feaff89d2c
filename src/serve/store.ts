/**
 * A search index on disk (Node): a snapshot plus a journal, so that no acknowledged change is lost in a crash and a
 * crash mid-write loses nothing else.
 *
 *   index.bin      snapshot: "BYOLIDX1", uint32 LE header length, JSON header {dim, count, seq, items: [[id, label]…]},
 *                  zero padding to 4 bytes, then count × dim float32 (l2-normalized rows). Written atomically.
 *   journal.jsonl  the changes after the snapshot, one JSON line each ({"seq", "op": "add", "id", "label", "v": base64
 *                  float32} or {"seq", "op": "remove", "id"}), each flushed to disk before the change is acknowledged.
 *
 * Opening replays the journal's lines past the snapshot's `seq`; a last line cut short (a crash mid-append) is dropped,
 * a damaged line elsewhere is an error naming it. Compaction writes a new snapshot (atomically) and then empties the
 * journal; a crash between the two replays nothing twice (seq). The folder is a byol output folder of kind `index` with
 * a lock (one writer at a time). Embeddings written by `byol embed` (.npy with a .jsonl of ids beside it) load read-only.
 */
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ByolError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { parseJsonLines } from '../io/jsonl.js';
import { decodeNpy } from '../io/npy.js';
import { OutputDir } from '../io/output.js';
import { shownPath } from '../io/paths.js';
import { LOCK_FILE, RunLock } from '../run/lock.js';
import { VectorIndex, type Item } from './vector-index.js';

export { decodeNpy };

const MAGIC = 'BYOLIDX1';
export const SNAPSHOT = 'index.bin';
export const JOURNAL = 'journal.jsonl';

export function encodeSnapshot(index: VectorIndex, seq: number): Uint8Array {
  const items: [string, string | number | null][] = [];
  const rows: Float32Array[] = [];
  for (const [item, v] of index.entries()) {
    items.push([item.id, item.label]);
    rows.push(v);
  }
  const header = Buffer.from(JSON.stringify({ dim: index.dim, count: items.length, seq, items }), 'utf8');
  const start = 12 + header.length + ((4 - ((12 + header.length) % 4)) % 4);
  const out = new Uint8Array(start + items.length * index.dim * 4);
  out.set(Buffer.from(MAGIC, 'latin1'));
  new DataView(out.buffer).setUint32(8, header.length, true);
  out.set(header, 12);
  const body = new Float32Array(out.buffer, start, items.length * index.dim);
  rows.forEach((r, i) => body.set(r, i * index.dim));
  return out;
}

export function decodeSnapshot(bytes: Uint8Array, path: string): { index: VectorIndex; seq: number } {
  const bad = (why: string) => new ByolError('INVALID_DATA', `${path}: not a byol index snapshot (${why})`, path);
  if (bytes.length < 12 || Buffer.from(bytes.subarray(0, 8)).toString('latin1') !== MAGIC) throw bad('no BYOLIDX1 header');
  const len = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(8, true);
  if (12 + len > bytes.length) throw bad('header cut short');
  let h: { dim: number; count: number; seq: number; items: [string, string | number | null][] };
  try {
    h = JSON.parse(Buffer.from(bytes.subarray(12, 12 + len)).toString('utf8')) as typeof h;
  } catch {
    throw bad('header is not JSON');
  }
  const start = 12 + len + ((4 - ((12 + len) % 4)) % 4);
  if (!(Number.isInteger(h.dim) && h.dim > 0 && Array.isArray(h.items) && h.items.length === h.count) || bytes.length !== start + h.count * h.dim * 4) throw bad('sizes do not agree');
  const copy = bytes.slice(start);
  const data = new Float32Array(copy.buffer, 0, h.count * h.dim);
  return { index: VectorIndex.fromRows(h.dim, h.items.map(([id, label]) => ({ id, label })), data), seq: h.seq };
}

/** Embeddings from `byol embed FILE.npy` and the ids and labels in FILE.jsonl beside it. */
export async function loadEmbeddings(npyPath: string): Promise<VectorIndex> {
  const { data, rows, dim } = decodeNpy(new Uint8Array(await readFile(npyPath)), shownPath(npyPath));
  const side = npyPath.replace(/\.npy$/i, '.jsonl');
  let lines: string[];
  try {
    lines = (await readFile(side, 'utf8')).split('\n').filter((l) => l.trim() !== '');
  } catch {
    throw new ByolError('INVALID_DATA', `${shownPath(side)}: missing; byol embed writes the ids of ${shownPath(npyPath)} there`, side);
  }
  if (lines.length !== rows) throw new ByolError('INVALID_DATA', `${shownPath(side)}: ${lines.length} lines for ${rows} embeddings`, side);
  const items = lines.map((l, i) => {
    let r: { id?: unknown; label?: unknown };
    try {
      r = JSON.parse(l) as typeof r;
    } catch {
      throw new ByolError('INVALID_DATA', `${shownPath(side)}: line ${i + 1} is not JSON`, side);
    }
    const label = typeof r.label === 'string' || typeof r.label === 'number' ? r.label : null;
    return { id: String(r.id ?? i), label };
  });
  return VectorIndex.fromRows(dim, items, data);
}

type JournalLine = { seq: number; op: 'add'; id: string; label: string | number | null; v: string } | { seq: number; op: 'remove'; id: string };

function isJournalLine(v: unknown): v is JournalLine {
  const r = v as Partial<{ seq: unknown; op: unknown }> | null;
  return typeof r === 'object' && r !== null && typeof r.seq === 'number' && (r.op === 'add' || r.op === 'remove');
}

/** A writable index folder. */
export class IndexStore {
  private journal: import('node:fs/promises').FileHandle | null = null;
  private pending = 0;
  /** Changes run one after another (the journal's order is the index's). */
  private chain: Promise<unknown> = Promise.resolve();

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const next = this.chain.then(f, f);
    this.chain = next.catch(() => undefined);
    return next;
  }

  private constructor(
    readonly dir: string,
    readonly index: VectorIndex,
    private seq: number,
    private readonly lock: RunLock,
    /** Journal lines since the last snapshot. */
    private journalLength: number,
    private readonly compactEvery: number,
  ) {}

  /**
   * Opens (or creates) the index folder `dir`. A new folder takes `dim` and, if given, `seed`'s items (then written as
   * its first snapshot). Errors name a damaged file; a folder in use by another process is refused.
   */
  static async open(dir: string, options: { dim?: number; seed?: VectorIndex; compactEvery?: number; log?: (line: string) => void } = {}): Promise<IndexStore> {
    const shown = shownPath(dir);
    await OutputDir.claim(dir, { kind: 'index', names: [SNAPSHOT, JOURNAL, LOCK_FILE] });
    const lock = await RunLock.acquire(dir, shown, 'served');
    try {
      let index: VectorIndex;
      let seq = 0;
      let snapshot: Uint8Array | null = null;
      try {
        snapshot = new Uint8Array(await readFile(join(dir, SNAPSHOT)));
      } catch {
        snapshot = null;
      }
      if (snapshot) {
        if (options.seed) throw new ByolError('OUTPUT_EXISTS', `${shown} already holds an index (${SNAPSHOT}); serve it without seeding, or choose another folder`, dir);
        ({ index, seq } = decodeSnapshot(snapshot, shownPath(join(dir, SNAPSHOT))));
      } else if (options.seed) {
        index = options.seed;
        await writeFileAtomic(join(dir, SNAPSHOT), encodeSnapshot(index, 0));
      } else {
        if (!options.dim) throw new ByolError('INVALID_OPTION', `${shown} holds no index yet: give the embedding size or seed it with embeddings`, 'index');
        index = new VectorIndex(options.dim);
      }
      // Replay the journal past the snapshot.
      let text = '';
      try {
        text = await readFile(join(dir, JOURNAL), 'utf8');
      } catch {
        text = '';
      }
      let kept = 0;
      const changes = parseJsonLines(text, {
        valid: isJournalLine,
        damaged: (line) => new ByolError('INVALID_DATA', `${shownPath(join(dir, JOURNAL))}: line ${line} is damaged`, join(dir, JOURNAL)),
        torn: () => options.log?.(`${shownPath(join(dir, JOURNAL))}: dropped its last line, cut short by a crash (that change was never acknowledged)`),
      });
      for (const { value: r } of changes) {
        if (r.seq <= seq) continue;
        if (r.op === 'add') {
          const b = Buffer.from(r.v, 'base64');
          index.add({ id: r.id, label: r.label }, new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)));
        } else index.remove(r.id);
        seq = r.seq;
        kept++;
      }
      const store = new IndexStore(dir, index, seq, lock, kept, options.compactEvery ?? 10_000);
      // A journal that ended in a torn line is rewritten whole before anything is appended to it.
      if (kept > 0 || text !== '') await store.compact();
      return store;
    } catch (e) {
      await lock.release();
      throw e;
    }
  }

  private async append(line: JournalLine): Promise<void> {
    this.journal ??= await open(join(this.dir, JOURNAL), 'a');
    await this.journal.appendFile(`${JSON.stringify(line)}\n`);
    await this.journal.datasync();
    this.journalLength++;
  }

  /** Adds (or replaces) items, durably: when it resolves, the change survives a crash. */
  add(entries: readonly { item: Item; vector: Float32Array }[]): Promise<void> {
    return this.serial(async () => {
      for (const { item, vector } of entries) {
        this.index.add(item, vector);
        const v = this.index.vector(item.id)!;
        await this.append({ seq: ++this.seq, op: 'add', id: item.id, label: item.label, v: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') });
      }
      await this.maybeCompact();
    });
  }

  /** Removes an item durably; false when there is none with that id. */
  remove(id: string): Promise<boolean> {
    return this.serial(async () => {
      if (!this.index.remove(id)) return false;
      await this.append({ seq: ++this.seq, op: 'remove', id });
      await this.maybeCompact();
      return true;
    });
  }

  private async maybeCompact(): Promise<void> {
    if (this.journalLength >= this.compactEvery && this.pending === 0) await this.compact();
  }

  /** Writes a snapshot of everything, then empties the journal. */
  async compact(): Promise<void> {
    this.pending++;
    try {
      await writeFileAtomic(join(this.dir, SNAPSHOT), encodeSnapshot(this.index, this.seq));
      await this.journal?.close();
      this.journal = null;
      await writeFileAtomic(join(this.dir, JOURNAL), '');
      this.journalLength = 0;
    } finally {
      this.pending--;
    }
  }

  /** Compacts and releases the folder. */
  async close(): Promise<void> {
    await this.chain;
    try {
      if (this.journalLength > 0) await this.compact();
    } finally {
      await this.journal?.close();
      this.journal = null;
      await this.lock.release();
    }
  }
}
