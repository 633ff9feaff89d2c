/** A small, strict flag parser: every flag declared and typed, every bad value a one-line ByolError. */
import { ByolError } from '../errors.js';

export type FlagType = 'int' | 'number' | 'string' | 'bool' | 'range';
export type FlagValue = number | string | boolean | readonly [number, number];

export interface Flag {
  readonly name: string;
  readonly type: FlagType;
  /** Shown in --help after the name, e.g. N, DIR. */
  readonly arg?: string;
  readonly help: string;
  readonly min?: number;
  readonly max?: number;
  /** `min` is exclusive. */
  readonly above?: boolean;
  readonly choices?: readonly string[];
}

export interface Command {
  readonly name: string;
  readonly summary: string;
  readonly usage: string;
  readonly positionals: readonly { readonly name: string; readonly optional?: boolean }[];
  readonly flags: readonly Flag[];
  readonly examples: readonly string[];
  readonly notes?: string;
}

const fail = (message: string, option: string) => new ByolError('INVALID_OPTION', message, option);

function parseValue(flag: Flag, raw: string): FlagValue {
  const name = `--${flag.name}`;
  switch (flag.type) {
    case 'string':
      if (flag.choices && !flag.choices.includes(raw)) throw fail(`${name} must be one of ${flag.choices.join(', ')}; got "${raw}"`, flag.name);
      return raw;
    case 'int':
    case 'number': {
      const v = Number(raw);
      const lo = flag.min === undefined ? '' : flag.above ? ` > ${flag.min}` : ` ≥ ${flag.min}`;
      const what = `${flag.type === 'int' ? 'an integer' : 'a number'}${lo}${flag.max === undefined ? '' : ` and ≤ ${flag.max}`}`;
      const ok =
        raw.trim() !== '' &&
        Number.isFinite(v) &&
        (flag.type === 'number' || Number.isInteger(v)) &&
        (flag.min === undefined || (flag.above ? v > flag.min : v >= flag.min)) &&
        (flag.max === undefined || v <= flag.max);
      if (!ok) throw fail(`${name} must be ${what}; got "${raw}"`, flag.name);
      return v;
    }
    case 'range': {
      const parts = raw.split(',').map(Number);
      if (parts.length !== 2 || !parts.every(Number.isFinite) || !(parts[0]! > 0 && parts[0]! <= parts[1]! && parts[1]! <= 1)) {
        throw fail(`${name} must be LO,HI with 0 < LO ≤ HI ≤ 1; got "${raw}"`, flag.name);
      }
      return [parts[0]!, parts[1]!] as const;
    }
    case 'bool':
      throw fail(`${name} takes no value; got "${raw}"`, flag.name);
  }
}

/** Parses argv against a command; `--help` is handled by the caller. */
export function parseArgs(cmd: Command, argv: readonly string[]): { flags: Map<string, FlagValue>; positionals: string[] } {
  const flags = new Map<string, FlagValue>();
  const positionals: string[] = [];
  const byName = new Map(cmd.flags.map((f) => [f.name, f]));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--') || a === '--') {
      positionals.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    let name = eq < 0 ? a.slice(2) : a.slice(2, eq);
    let flag = byName.get(name);
    if (!flag && name.startsWith('no-') && byName.get(name.slice(3))?.type === 'bool') {
      name = name.slice(3);
      flag = byName.get(name)!;
      if (eq >= 0) throw fail(`--no-${name} takes no value`, name);
      flags.set(name, false);
      continue;
    }
    if (!flag) throw fail(`unknown option --${name} for \`byol ${cmd.name}\` (see byol ${cmd.name} --help)`, name);
    if (flag.type === 'bool') {
      if (eq >= 0) throw fail(`--${name} takes no value`, name);
      flags.set(name, true);
      continue;
    }
    const raw = eq >= 0 ? a.slice(eq + 1) : argv[++i];
    if (raw === undefined || (eq < 0 && raw.startsWith('--'))) throw fail(`--${name} needs a value${flag.arg ? ` (${flag.arg})` : ''}`, name);
    if (flags.has(name)) throw fail(`--${name} is given twice`, name);
    flags.set(name, parseValue(flag, raw));
  }
  const required = cmd.positionals.filter((p) => !p.optional).length;
  if (positionals.length < required) {
    throw fail(`\`byol ${cmd.name}\` needs ${cmd.positionals.map((p) => p.name).slice(positionals.length, required).join(' and ')} (usage: ${cmd.usage})`, cmd.positionals[positionals.length]!.name);
  }
  if (positionals.length > cmd.positionals.length) throw fail(`unexpected argument "${positionals[cmd.positionals.length]}" for \`byol ${cmd.name}\` (usage: ${cmd.usage})`, 'argument');
  return { flags, positionals };
}

/** The --help text of a command. */
export function helpText(cmd: Command): string {
  const width = Math.max(...cmd.flags.map((f) => f.name.length + (f.arg ? f.arg.length + 1 : 0)), 10) + 4;
  const lines = [`byol ${cmd.name} — ${cmd.summary}`, '', `Usage: ${cmd.usage}`, ''];
  if (cmd.notes) lines.push(cmd.notes, '');
  if (cmd.flags.length) {
    lines.push('Options:');
    for (const f of cmd.flags) {
      const left = `--${f.name}${f.arg ? ` ${f.arg}` : ''}`;
      lines.push(`  ${left.padEnd(width)}${f.help}`);
    }
    lines.push('');
  }
  lines.push('Examples:', ...cmd.examples.map((e) => `  ${e}`), '');
  return lines.join('\n');
}
