// Small statistics helpers shared by the load generators and scenarios.
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export interface Summary {
  n: number;
  p50: number;
  p99: number;
  mean: number;
}

export function summarize(values: number[]): Summary {
  const s = Float64Array.from(values).sort();
  const arr = Array.from(s);
  const mean = arr.reduce((a, b) => a + b, 0) / Math.max(1, arr.length);
  return { n: arr.length, p50: percentile(arr, 50), p99: percentile(arr, 99), mean };
}

export const median = (xs: number[]): number =>
  percentile(
    [...xs].sort((a, b) => a - b),
    50,
  );

export const round = (x: number, digits = 3): number => (Number.isFinite(x) ? Number(x.toFixed(digits)) : x);
