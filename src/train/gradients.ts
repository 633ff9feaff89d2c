/**
 * Gradients that free memory as the backward pass goes.
 *
 * tfjs's `variableGrads` keeps every tensor the forward pass saved for backward, and every intermediate gradient it
 * computes, until the whole backward pass ends: at its peak a training step holds the saved activations and a
 * gradient of about the same size for each of them. PyTorch frees both as soon as the node that needs them is done.
 * `leanVariableGrads` is tfjs's algorithm — the same tape, the same nodes in the same order, the same gradient
 * functions and accumulation, so the same numbers — with that one difference: once a node's gradient is taken, the
 * tensors it saved and the gradients of its outputs are released (measured: the ResNet-50 step's peak, see README).
 *
 * It runs on tfjs-core's engine through members that are not part of its typed API (`state.activeTape`,
 * `startTape`, `endTape`, `scopedRun`); they are checked on first use, and where they are missing (another tfjs
 * version) the function falls back to `tf.variableGrads` itself.
 */
import * as tf from '@tensorflow/tfjs-core';

interface TapeNode {
  readonly id: number;
  readonly kernelName: string;
  readonly inputs: Record<string, tf.Tensor>;
  readonly outputs: tf.Tensor[];
  readonly gradient?: (dys: (tf.Tensor | null)[]) => Record<string, () => tf.Tensor>;
  readonly saved?: tf.Tensor[];
}

interface EngineInternals {
  state: { activeTape: TapeNode[] | null; gradientDepth: number };
  startTape(): void;
  endTape(): void;
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T;
  tidy<T extends tf.TensorContainer>(name: string, f: () => T): T;
}

function engineInternals(): EngineInternals | null {
  const e = tf.engine() as unknown as Partial<EngineInternals>;
  const ok = typeof e.startTape === 'function' && typeof e.endTape === 'function' && typeof e.scopedRun === 'function' && typeof e.tidy === 'function' && typeof e.state === 'object' && e.state !== null && typeof e.state.gradientDepth === 'number';
  return ok ? (e as EngineInternals) : null;
}

/**
 * The nodes of `tape` on a path from one of `xs` to `y`, in tape order, each with only the inputs that depend on `xs`
 * (the inputs whose gradients are wanted) — the same selection as tfjs's own.
 */
export function nodesBetween(tape: readonly TapeNode[], xs: readonly tf.Tensor[], y: tf.Tensor): TapeNode[] {
  const fromX = new Set(xs.map((x) => x.id));
  const nodeFromX = new Set<number>();
  for (const node of tape) {
    if (Object.values(node.inputs).some((t) => fromX.has(t.id))) {
      nodeFromX.add(node.id);
      for (const o of node.outputs) fromX.add(o.id);
    }
  }
  const toY = new Set([y.id]);
  const nodeToY = new Set<number>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i]!;
    if (node.outputs.some((o) => toY.has(o.id))) {
      nodeToY.add(node.id);
      for (const t of Object.values(node.inputs)) toY.add(t.id);
    }
  }
  return tape
    .filter((n) => nodeFromX.has(n.id) && nodeToY.has(n.id))
    .map((n) => ({ ...n, inputs: Object.fromEntries(Object.entries(n.inputs).filter(([, t]) => fromX.has(t.id))) }));
}

/**
 * As `tf.variableGrads(f, vars)` for a list of trainable variables: the value of `f` (a scalar) and the gradient of
 * each variable it depends on, by name — with memory released during the backward pass (see the module's comment).
 */
export function leanVariableGrads(f: () => tf.Scalar, vars: readonly tf.Variable[]): { value: tf.Scalar; grads: tf.NamedTensorMap } {
  const engine = engineInternals();
  if (!engine || vars.some((v) => !v.trainable)) return tf.variableGrads(f, vars as tf.Variable[]);
  const y = engine.scopedRun(
    () => engine.startTape(),
    () => engine.endTape(),
    () => engine.tidy('forward', f),
  );
  if (!(y instanceof tf.Tensor) || y.rank !== 0) throw new Error('leanVariableGrads: f must return a scalar tensor');
  const nodes = nodesBetween(engine.state.activeTape ?? [], vars, y);
  const outermost = engine.state.gradientDepth === 0;
  const xIds = new Set(vars.map((v) => v.id));
  const grads = engine.tidy('backward', () => {
    const acc = new Map<number, tf.Tensor>([[y.id, tf.onesLike(y)]]);
    for (let i = nodes.length - 1; i >= 0; i--) {
      const node = nodes[i]!;
      if (!node.gradient) throw new Error(`Cannot compute gradient: gradient function not found for ${node.kernelName}.`);
      const inputGrads = node.gradient(node.outputs.map((o) => acc.get(o.id) ?? null));
      for (const [name, x] of Object.entries(node.inputs)) {
        const grad = inputGrads[name];
        if (!grad) throw new Error(`Cannot backprop through input ${name}. Available gradients found: ${Object.keys(inputGrads)}.`);
        const dx = engine.tidy('grad', grad);
        if (dx.dtype !== 'float32') throw new Error(`Error in gradient for op ${node.kernelName}. The gradient of input ${name} must have 'float32' dtype, but has '${dx.dtype}'`);
        if (!tf.util.arraysEqual(dx.shape, x.shape)) throw new Error(`Error in gradient for op ${node.kernelName}. The gradient of input '${name}' has shape '${dx.shape}', which does not match the shape of the input '${x.shape}'`);
        const current = acc.get(x.id);
        if (current === undefined) acc.set(x.id, dx);
        else {
          acc.set(x.id, tf.add(current, dx));
          current.dispose();
        }
      }
      if (!outermost) continue;
      // The node is done: what it saved, and the gradients of its outputs, are needed by nothing else (each node
      // keeps its own references to saved data; a gradient handed on unchanged as an input's stays).
      for (const t of node.saved ?? []) t.dispose();
      for (const o of node.outputs) {
        const g = acc.get(o.id);
        if (!g || xIds.has(o.id)) continue;
        acc.delete(o.id);
        if (![...acc.values()].includes(g)) g.dispose();
      }
    }
    const out = vars.map((v) => acc.get(v.id) ?? null);
    if (outermost) {
      for (const node of engine.state.activeTape ?? []) for (const t of node.saved ?? []) t.dispose();
      engine.state.activeTape = null;
    }
    return out as tf.Tensor[];
  });
  const named: tf.NamedTensorMap = {};
  vars.forEach((v, i) => {
    if (grads[i] != null) named[v.name] = grads[i]!;
  });
  if (Object.keys(named).length === 0) throw new Error('Cannot find a connection between any variable and the result of the loss function y=f(x).');
  return { value: y as tf.Scalar, grads: named };
}
