/** What the load benchmarks compete with. */
import { spawn, type ChildProcess } from 'node:child_process';

/** A competing process: two threads that never wait (a build, a browser tab, another training run). Kill it after. */
export function competitor(): ChildProcess {
  const code = `const { Worker } = require('node:worker_threads'); for (let i = 0; i < 2; i++) new Worker('let x = 0; for (;;) x = (x * 1.000001 + 1) % 1e9;', { eval: true }); setInterval(() => {}, 1e9);`;
  return spawn(process.execPath, ['-e', code], { stdio: 'ignore' });
}
