import { isAbsolute, relative } from 'node:path';

/** A path as the user would write it in messages: relative to the working directory when it lies inside it. */
export function shownPath(p: string): string {
  const r = relative(process.cwd(), p);
  return r !== '' && !r.startsWith('..') && !isAbsolute(r) ? r : p;
}
