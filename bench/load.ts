/**
 * Benchmark: the native BYOL step on a loaded machine. A user's laptop is never idle; OpenMP threads that spin
 * while waiting for work (libgomp's default) burn the cores another process needs and then wait for them, so a
 * loaded machine can cost a step far more than its share of the CPU. For each OpenMP wait policy this measures
 * images/s of the step idle and with one competing process of two busy threads, each in a fresh child process
 * (the policy is read when the OpenMP runtime loads), and prints loaded / idle.
 *
 *   npm run build && node dist/bench/load.js [--steps N] [--model convnet|resnet18-cifar] [--policies default,passive,…]
 *
 * Policies: `byol` (what the native backend sets when the user has not: see src/native/backend.ts), `default`
 * (libgomp's own: spin up to 300 000 times, then sleep), `passive` (OMP_WAIT_POLICY=passive: sleep at once),
 * `active` (OMP_WAIT_POLICY=active: spin only).
 */
import { spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { competitor } from './competitor.js';

const arg = (name: string, fallback: string) => (process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1]! : fallback);
const steps = Number(arg('steps', '8'));
const model = arg('model', 'convnet');
const batch = Number(arg('batch', model === 'convnet' ? '256' : '64'));

/** The child: one measurement of the step, printed as JSON. */
async function child(): Promise<void> {
  const tf = await import('@tensorflow/tfjs-core');
  const { Byol } = await import('../src/index.js');
  const { useBackend } = await import('../src/node.js');
  await useBackend('native');
  const shape: [number, number, number, number] = model === 'convnet' ? [batch, 28, 28, 1] : [batch, 32, 32, 3];
  const learner = new Byol({ encoder: model as 'convnet', batchSize: batch, totalSteps: 1000, seed: 1 });
  const x = tf.randomUniform(shape, 0, 1, 'float32', 1);
  const y = tf.reverse(x, 2);
  await learner.step(x, y);
  await learner.step(x, y);
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  for (let s = 0; s < steps; s++) await learner.step(x, y);
  const secs = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  console.log(JSON.stringify({ imagesPerSecond: (steps * batch) / secs, cpuShare: (cpu.user + cpu.system) / 1e6 / secs / cpus().length }));
}

const POLICIES: Record<string, Record<string, string>> = {
  byol: {},
  default: { BYOL_OMP_WAIT: 'keep' },
  passive: { OMP_WAIT_POLICY: 'passive' },
  active: { OMP_WAIT_POLICY: 'active' },
  'spin-10k': { GOMP_SPINCOUNT: '10000' },
  'spin-1k': { GOMP_SPINCOUNT: '1000' },
};

function measure(env: Record<string, string>): { imagesPerSecond: number; cpuShare: number } {
  const clean = { ...process.env };
  delete clean['OMP_WAIT_POLICY'];
  delete clean['GOMP_SPINCOUNT'];
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', '--steps', String(steps), '--model', model, '--batch', String(batch)], { encoding: 'utf8', env: { ...clean, ...env } });
  if (r.status !== 0) throw new Error(r.stderr.trim().split('\n').pop());
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as { imagesPerSecond: number; cpuShare: number };
}

if (process.argv.includes('--child')) await child();
else {
  const policies = arg('policies', 'byol,default,passive,active').split(',');
  console.log(`native BYOL step, ${model} batch ${batch}, ${steps} timed steps; ${cpus().length} cores; competitor: one process, two busy threads`);
  console.log(`${'policy'.padEnd(10)} ${'idle img/s'.padStart(11)} ${'loaded img/s'.padStart(13)} ${'loaded/idle'.padStart(12)}  (CPU share of the step: idle, loaded)`);
  for (const p of policies) {
    const env = POLICIES[p];
    if (!env) throw new Error(`unknown policy ${p} (${Object.keys(POLICIES).join(', ')})`);
    const idle = measure(env);
    const rival = competitor();
    await new Promise((r) => setTimeout(r, 500));
    let loaded;
    try {
      loaded = measure(env);
    } finally {
      rival.kill('SIGKILL');
    }
    console.log(
      `${p.padEnd(10)} ${idle.imagesPerSecond.toFixed(1).padStart(11)} ${loaded.imagesPerSecond.toFixed(1).padStart(13)} ${(loaded.imagesPerSecond / idle.imagesPerSecond).toFixed(2).padStart(12)}  (${(100 * idle.cpuShare).toFixed(0)} %, ${(100 * loaded.cpuShare).toFixed(0)} %)`,
    );
  }
}
