/** Number of classes the label arrays use: the largest label + 1 (a loop: spreading a million labels overflows the stack). */
export function classCount(...labelArrays: ArrayLike<number>[]): number {
  let max = -1;
  for (const labels of labelArrays) for (let i = 0; i < labels.length; i++) if (labels[i]! > max) max = labels[i]!;
  return max + 1;
}
