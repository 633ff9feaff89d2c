import { readFile } from 'node:fs/promises';
import type { LearnerState } from '../byol/learner.js';
import { ByolError } from '../errors.js';
import { writeFileAtomic } from './atomic.js';

const MAGIC = 'BYOLCKPT1\n';

interface ArrayEntry {
  readonly group: string;
  readonly length: number;
}

interface Header {
  readonly format: 1;
  readonly step: number;
  readonly optimizer: { readonly kind: string; readonly updates: number; readonly slots: readonly string[] };
  readonly meta: unknown;
  readonly arrays: readonly ArrayEntry[];
}

const GROUPS = ['onlineWeights', 'onlineState', 'targetWeights', 'targetState'] as const;

/**
 * Writes a learner's state (and any JSON `meta`: config, data position, generator states) to one file, atomically:
 * `BYOLCKPT1\n`, a 4-byte little-endian header length, the JSON header, then every array's float32 values. A crash
 * mid-write leaves the previous file untouched.
 */
export async function saveCheckpoint(path: string, state: LearnerState, meta: unknown = null): Promise<void> {
  const arrays: { group: string; data: Float32Array }[] = [];
  for (const g of GROUPS) for (const a of state.tensors[g]) arrays.push({ group: g, data: a });
  const slots = Object.keys(state.optimizer.slots);
  for (const s of slots) for (const a of state.optimizer.slots[s]!) arrays.push({ group: `optimizer.${s}`, data: a });
  const header: Header = {
    format: 1,
    step: state.step,
    optimizer: { kind: state.optimizer.kind, updates: state.optimizer.updates, slots },
    meta,
    arrays: arrays.map((a) => ({ group: a.group, length: a.data.length })),
  };
  const head = Buffer.from(JSON.stringify(header), 'utf8');
  // Pad the header so the float data starts 4-byte aligned.
  const pad = (4 - ((MAGIC.length + 4 + head.length) % 4)) % 4;
  const total = MAGIC.length + 4 + head.length + pad + arrays.reduce((n, a) => n + a.data.byteLength, 0);
  const out = Buffer.alloc(total);
  out.write(MAGIC, 0, 'latin1');
  out.writeUInt32LE(head.length + pad, MAGIC.length);
  head.copy(out, MAGIC.length + 4);
  out.fill(0x20, MAGIC.length + 4 + head.length, MAGIC.length + 4 + head.length + pad);
  let at = MAGIC.length + 4 + head.length + pad;
  for (const a of arrays) {
    Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength).copy(out, at);
    at += a.data.byteLength;
  }
  await writeFileAtomic(path, out);
}

/** Reads a checkpoint written by {@link saveCheckpoint}. Errors name the file and what is wrong. */
export async function loadCheckpoint(path: string): Promise<{ state: LearnerState; meta: unknown }> {
  const fail = (why: string) => new ByolError('INVALID_STATE', `${path}: ${why}`, path);
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (e) {
    throw fail(`cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (buf.length < MAGIC.length + 4 || buf.toString('latin1', 0, MAGIC.length) !== MAGIC) throw fail('not a byol checkpoint (bad magic)');
  const headLength = buf.readUInt32LE(MAGIC.length);
  const dataStart = MAGIC.length + 4 + headLength;
  if (dataStart > buf.length) throw fail('truncated header');
  let header: Header;
  try {
    header = JSON.parse(buf.toString('utf8', MAGIC.length + 4, dataStart)) as Header;
  } catch {
    throw fail('corrupt header');
  }
  if (header.format !== 1) {
    throw fail(
      typeof header.format === 'number' && header.format > 1
        ? `written by a newer byol (checkpoint format ${header.format}; this version reads format 1): upgrade byol to read it`
        : `unsupported checkpoint format ${String(header.format)}`,
    );
  }
  const expected = header.arrays.reduce((n, a) => n + a.length * 4, 0);
  if (buf.length !== dataStart + expected) throw fail(`holds ${buf.length - dataStart} data bytes, its header lists ${expected} (truncated?)`);
  const groups: Record<string, Float32Array[]> = {};
  let at = dataStart;
  for (const a of header.arrays) {
    const copy = new Float32Array(a.length);
    new Uint8Array(copy.buffer).set(buf.subarray(at, at + a.length * 4));
    (groups[a.group] ??= []).push(copy);
    at += a.length * 4;
  }
  const slots: Record<string, Float32Array[]> = {};
  for (const s of header.optimizer.slots) slots[s] = groups[`optimizer.${s}`] ?? [];
  const state: LearnerState = {
    step: header.step,
    optimizer: { kind: header.optimizer.kind, updates: header.optimizer.updates, slots },
    tensors: {
      onlineWeights: groups['onlineWeights'] ?? [],
      onlineState: groups['onlineState'] ?? [],
      targetWeights: groups['targetWeights'] ?? [],
      targetState: groups['targetState'] ?? [],
    },
  };
  return { state, meta: header.meta };
}
