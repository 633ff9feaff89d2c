/**
 * A pickle reader that executes nothing. Python's pickle format is a small stack machine whose GLOBAL and REDUCE
 * opcodes call any importable function — `pickle.load` of a hostile file runs its code. This reader implements the
 * opcodes (protocols 0–5) as data only: a global is looked up in an allow-list and "called" by a JavaScript function
 * of ours that builds a plain value (a state dict, a tensor description, a NumPy array); any other global is an error
 * naming it. Sizes are bounded. Node-free.
 */
import { ByolError } from '../errors.js';

/** A Python tuple (to tell it from a list). */
export class PyTuple {
  constructor(readonly items: unknown[]) {}
}

/** A reference to an allowed global: what GLOBAL pushes, and what REDUCE / NEWOBJ call. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
    readonly call: (args: unknown[]) => unknown,
  ) {}
}

/** What an object built by REDUCE / NEWOBJ may do when BUILD gives it a state. */
export interface Buildable {
  setState(state: unknown): void;
}

export interface UnpickleOptions {
  /** The allowed globals, by `module.name`: each returns the value its call builds. */
  readonly globals: ReadonlyMap<string, (args: unknown[]) => unknown>;
  /** Resolves a persistent id (PyTorch's storages). Without it, a persistent id is an error. */
  readonly persistentLoad?: (pid: unknown) => unknown;
  /** For messages. */
  readonly file: string;
  /** At most this many memo entries and stack items (default 10 million). */
  readonly maxItems?: number;
}

const MARK = Symbol('mark');

/** Reads one pickle from `data` (protocols 0–5; the opcodes of `pickle.dump` and `torch.save`). */
export function unpickle(data: Uint8Array, options: UnpickleOptions): unknown {
  const { file } = options;
  const maxItems = options.maxItems ?? 10_000_000;
  const fail = (why: string) => new ByolError('INVALID_DATA', `${file}: ${why}`, file);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const text = new TextDecoder('utf-8', { fatal: false });
  let at = 0;
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();
  const need = (n: number) => {
    if (at + n > data.length) throw fail(`truncated pickle (needs ${n} more bytes at offset ${at})`);
  };
  const u8 = () => (need(1), data[at++]!);
  const u16 = () => (need(2), (at += 2), view.getUint16(at - 2, true));
  const u32 = () => (need(4), (at += 4), view.getUint32(at - 4, true));
  const i32 = () => (need(4), (at += 4), view.getInt32(at - 4, true));
  const u64 = () => {
    need(8);
    const v = view.getBigUint64(at, true);
    at += 8;
    if (v > BigInt(data.length)) throw fail(`a length of ${v} bytes runs past the file`);
    return Number(v);
  };
  const bytes = (n: number) => (need(n), (at += n), data.subarray(at - n, at));
  const line = () => {
    const end = data.indexOf(0x0a, at);
    if (end < 0) throw fail('truncated pickle (an unterminated line)');
    const s = text.decode(data.subarray(at, end));
    at = end + 1;
    return s;
  };
  const push = (v: unknown) => {
    if (stack.length >= maxItems) throw fail(`more than ${maxItems} items on the pickle stack`);
    stack.push(v);
  };
  const pop = () => {
    if (stack.length === 0 || stack[stack.length - 1] === MARK) throw fail('a pickle opcode found an empty stack');
    return stack.pop();
  };
  const popMark = () => {
    const m = marks.pop();
    if (m === undefined) throw fail('a pickle opcode found no MARK');
    const items = stack.splice(m);
    items.shift(); // the MARK itself
    return items;
  };
  const top = () => {
    if (stack.length === 0) throw fail('a pickle opcode found an empty stack');
    return stack[stack.length - 1];
  };
  const global = (module: string, name: string) => {
    const call = options.globals.get(`${module}.${name}`);
    if (!call) throw fail(`refusing the pickle global ${module}.${name} (only the tensors, arrays and dicts of model weights are read; nothing in the file is run)`);
    return new PyGlobal(module, name, call);
  };
  const call = (fn: unknown, args: unknown) => {
    if (!(fn instanceof PyGlobal)) throw fail('a pickle calls something that is not an allowed global');
    const list = args instanceof PyTuple ? args.items : Array.isArray(args) ? args : [];
    return fn.call(list);
  };
  const setItems = (dict: unknown, items: unknown[]) => {
    if (!(dict instanceof Map)) throw fail('a pickle sets items on something that is not a dict');
    for (let i = 0; i + 1 < items.length; i += 2) dict.set(key(items[i]), items[i + 1]);
  };
  const key = (k: unknown) => (k instanceof PyTuple ? JSON.stringify(k.items) : k);
  const memoPut = (i: number, v: unknown) => {
    if (memo.size >= maxItems) throw fail(`more than ${maxItems} memo entries`);
    memo.set(i, v);
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) throw fail('pickle protocol newer than 5');
        break;
      case 0x95: // FRAME
        u64();
        break;
      case 0x2e: // STOP
        if (stack.length !== 1) throw fail(`a pickle that ends with ${stack.length} values on its stack`);
        return stack[0];
      case 0x28: // MARK
        marks.push(stack.length);
        push(MARK);
        break;
      case 0x4e: // NONE
        push(null);
        break;
      case 0x88: // NEWTRUE
        push(true);
        break;
      case 0x89: // NEWFALSE
        push(false);
        break;
      case 0x4b: // BININT1
        push(u8());
        break;
      case 0x4d: // BININT2
        push(u16());
        break;
      case 0x4a: // BININT
        push(i32());
        break;
      case 0x8a: {
        // LONG1: little-endian two's complement
        const b = bytes(u8());
        let v = 0n;
        for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
        if (b.length > 0 && b[b.length - 1]! & 0x80) v -= 1n << BigInt(8 * b.length);
        push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x47: // BINFLOAT (big-endian double)
        need(8);
        push(view.getFloat64(at, false));
        at += 8;
        break;
      case 0x49: {
        // INT (protocol 0)
        const s = line();
        push(s === '01' ? true : s === '00' ? false : Number(s));
        break;
      }
      case 0x4c: // LONG (protocol 0)
        push(Number(line().replace(/L$/, '')));
        break;
      case 0x46: // FLOAT (protocol 0)
        push(Number(line()));
        break;
      case 0x58: // BINUNICODE
        push(text.decode(bytes(u32())));
        break;
      case 0x8c: // SHORT_BINUNICODE
        push(text.decode(bytes(u8())));
        break;
      case 0x8d: // BINUNICODE8
        push(text.decode(bytes(u64())));
        break;
      case 0x56: // UNICODE (protocol 0, raw-unicode-escape)
        push(line());
        break;
      case 0x42: // BINBYTES
        push(bytes(u32()));
        break;
      case 0x43: // SHORT_BINBYTES
        push(bytes(u8()));
        break;
      case 0x8e: // BINBYTES8
        push(bytes(u64()));
        break;
      case 0x96: // BYTEARRAY8
        push(bytes(u64()));
        break;
      case 0x54: // BINSTRING (Python 2 str)
        push(bytes(i32()));
        break;
      case 0x55: // SHORT_BINSTRING
        push(bytes(u8()));
        break;
      case 0x5d: // EMPTY_LIST
        push([]);
        break;
      case 0x7d: // EMPTY_DICT
        push(new Map());
        break;
      case 0x29: // EMPTY_TUPLE
        push(new PyTuple([]));
        break;
      case 0x8f: // EMPTY_SET
        push(new Set());
        break;
      case 0x85: // TUPLE1
        push(new PyTuple([pop()]));
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        push(new PyTuple([pop(), b]));
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        push(new PyTuple([pop(), b, c]));
        break;
      }
      case 0x74: // TUPLE
        push(new PyTuple(popMark()));
        break;
      case 0x6c: // LIST
        push(popMark());
        break;
      case 0x64: {
        // DICT
        const d = new Map();
        setItems(d, popMark());
        push(d);
        break;
      }
      case 0x91: // FROZENSET
        push(new Set(popMark()));
        break;
      case 0x61: {
        // APPEND
        const v = pop();
        const list = top();
        if (!Array.isArray(list)) throw fail('a pickle appends to something that is not a list');
        list.push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        const list = top();
        if (!Array.isArray(list)) throw fail('a pickle appends to something that is not a list');
        for (const v of items) list.push(v);
        break;
      }
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        const set = top();
        if (!(set instanceof Set)) throw fail('a pickle adds to something that is not a set');
        for (const v of items) set.add(v);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x70: // PUT
        memoPut(Number(line()), top());
        break;
      case 0x71: // BINPUT
        memoPut(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memoPut(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memoPut(memo.size, top());
        break;
      case 0x67: // GET
      case 0x68: // BINGET
      case 0x6a: {
        // LONG_BINGET
        const i = op === 0x67 ? Number(line()) : op === 0x68 ? u8() : u32();
        if (!memo.has(i)) throw fail(`a pickle refers to memo entry ${i}, which it never stored`);
        push(memo.get(i));
        break;
      }
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        push(top());
        break;
      case 0x63: {
        // GLOBAL "module\nname\n"
        const module = line();
        push(global(module, line()));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') throw fail('a pickle names a global with something that is not a string');
        push(global(module, name));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        push(call(pop(), args));
        break;
      }
      case 0x81: {
        // NEWOBJ
        const args = pop();
        push(call(pop(), args));
        break;
      }
      case 0x92: {
        // NEWOBJ_EX
        pop(); // kwargs
        const args = pop();
        push(call(pop(), args));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        const obj = top();
        if (obj && typeof (obj as Buildable).setState === 'function') (obj as Buildable).setState(state);
        // Other objects take no state: a dict's is its attributes (an OrderedDict's `_metadata`), not its items.
        break;
      }
      case 0x51: // BINPERSID
        if (!options.persistentLoad) throw fail('a pickle with persistent ids (storages) outside a PyTorch archive');
        push(options.persistentLoad(pop()));
        break;
      case 0x50: // PERSID
        if (!options.persistentLoad) throw fail('a pickle with persistent ids (storages) outside a PyTorch archive');
        push(options.persistentLoad(line()));
        break;
      default:
        throw fail(`unsupported pickle opcode 0x${op.toString(16)} at offset ${at - 1}`);
    }
  }
}
