/**
 * Typed errors. Every error the library throws on bad input is a {@link ByolError} with a stable
 * `code` (for programs) and a message that names the option or input and what is allowed (for people).
 */

export type ByolErrorCode =
  /** An option has a value outside what it allows. `option` names it. */
  | 'INVALID_OPTION'
  /** A tensor passed to a method has the wrong rank, shape or dtype. `option` names the argument. */
  | 'INVALID_INPUT'
  /** The encoder cannot be used: its output is not one feature vector per image, or it has no weights. */
  | 'INVALID_ENCODER'
  /** Saved state (optimizer slots, weights) does not fit this learner. */
  | 'INVALID_STATE'
  /** A data file or folder is unreadable or malformed. `option` names the file. */
  | 'INVALID_DATA'
  /** A download failed (network, HTTP status, interrupted transfer). `option` names the URL. */
  | 'DOWNLOAD_FAILED'
  /** A downloaded file's checksum is not the published one. `option` names the file. */
  | 'CHECKSUM_MISMATCH'
  /** Training produced a NaN or infinite loss or weights; the run stopped without overwriting a good checkpoint. */
  | 'TRAINING_DIVERGED'
  /**
   * An output location holds files byol did not write (a folder that is not empty, a file of the same name): nothing
   * was written. `option` names the path.
   */
  | 'OUTPUT_EXISTS'
  /**
   * An output could not be written: a read-only or full file system, no permission, a path through a file, a
   * pseudo file system such as /proc. `option` names the path; what was there before is intact.
   */
  | 'WRITE_FAILED'
  /** A run folder is in use by a live `byol pretrain` process (its lock file names it). `option` names the folder. */
  | 'RUN_IN_USE'
  /** What this environment lacks for the request: a browser without a canvas or WebGL, a model of another input. */
  | 'UNSUPPORTED';

export class ByolError extends Error {
  override readonly name = 'ByolError';
  readonly code: ByolErrorCode;
  /** The option, argument or state field the error is about. */
  readonly option: string | undefined;

  constructor(code: ByolErrorCode, message: string, option?: string) {
    super(message);
    this.code = code;
    this.option = option;
  }
}

/** Shorthand for an INVALID_OPTION error whose message starts with the option's name. */
export function invalidOption(option: string, expected: string, got: unknown): ByolError {
  return new ByolError('INVALID_OPTION', `option \`${option}\` must be ${expected}; got ${describe(got)}`, option);
}

/** A short, safe rendering of a bad value for an error message. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  if (Array.isArray(value)) return `[${value.map(describe).join(', ')}]`;
  if (typeof value === 'function') return 'a function';
  return Object.prototype.toString.call(value);
}
