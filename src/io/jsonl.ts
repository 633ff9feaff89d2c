/**
 * One rule for the JSON-lines files byol appends to (a run's metrics, an index's journal): an append interrupted by a
 * crash or a full disk leaves at most its own line cut short at the end, so a bad last line is dropped (and said); a
 * bad line anywhere else is damage nobody should paper over, and an error naming that line.
 */

export interface JsonLine<T> {
  readonly value: T;
  /** The line as it stands in the file (without its newline). */
  readonly text: string;
  /** 1-based. */
  readonly line: number;
}

export interface JsonLinesRules<T> {
  /** Whether a parsed line is a record of this file (a line that is JSON but not one counts as bad). */
  readonly valid: (value: unknown) => value is T;
  /** The error for a bad line that is not the last. */
  readonly damaged: (line: number) => Error;
  /** Told when a bad last line is dropped, with its length in characters. */
  readonly torn?: (length: number) => void;
}

/** The records of a JSON-lines text, blank lines skipped, by the rule above. */
export function parseJsonLines<T>(text: string, rules: JsonLinesRules<T>): JsonLine<T>[] {
  const lines = text.split('\n');
  let last = lines.length - 1;
  while (last >= 0 && lines[last]!.trim() === '') last--;
  const out: JsonLine<T>[] = [];
  for (let i = 0; i <= last; i++) {
    const l = lines[i]!;
    if (l.trim() === '') continue;
    let value: unknown;
    let ok = true;
    try {
      value = JSON.parse(l);
      ok = rules.valid(value);
    } catch {
      ok = false;
    }
    if (ok) out.push({ value: value as T, text: l, line: i + 1 });
    else if (i === last) rules.torn?.(l.length);
    else throw rules.damaged(i + 1);
  }
  return out;
}
