// Result shape shared by every scenario, and its rendering as a Markdown table (pasteable into the README).
export const OURS = 'codex-egress';

export interface Row {
  metric: string;
  unit: string;
  /** Which direction is better, for reading the ratios. */
  better: 'higher' | 'lower';
  /** One figure per column (null: not measured / not applicable). */
  values: Record<string, number | null>;
  /** The target for this row, and whether we meet it (undefined: no target). */
  target?: string;
  met?: boolean;
}

export interface ScenarioResult {
  id: string;
  title: string;
  /** Column order; the first is always ours. */
  columns: string[];
  rows: Row[];
  notes: string[];
}

const fmt = (x: number | null | undefined): string => {
  if (x === null || x === undefined || Number.isNaN(x)) return '–';
  const a = Math.abs(x);
  if (a >= 1000) return Math.round(x).toLocaleString('en-US');
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  return x.toFixed(3);
};

/** ours ÷ peer, printed as "0.93×". */
export function ratio(ours: number | null | undefined, peer: number | null | undefined): string {
  if (ours == null || peer == null || !Number.isFinite(ours) || !Number.isFinite(peer) || peer === 0) return '–';
  return `${(ours / peer).toFixed(2)}×`;
}

export function renderTable(r: ScenarioResult): string {
  const [ours, ...peers] = r.columns;
  const hasTarget = r.rows.some((row) => row.target);
  const head = ['metric', ...r.columns, ...peers.map((p) => `${ours} ÷ ${p}`), ...(hasTarget ? ['target'] : [])];
  const lines = [`### ${r.title}`, '', `| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? ' :-- ' : ' --: ')).join('|')}|`];
  for (const row of r.rows) {
    const cells = [
      `${row.metric} (${row.unit}${row.better === 'higher' ? ', ↑' : ', ↓'})`,
      ...r.columns.map((c) => fmt(row.values[c])),
      ...peers.map((p) => ratio(row.values[ours!], row.values[p])),
      ...(hasTarget ? [row.target ? `${row.target} ${row.met === undefined ? '' : row.met ? '✅' : '❌'}`.trim() : ''] : []),
    ];
    lines.push(`| ${cells.join(' | ')} |`);
  }
  if (r.notes.length) lines.push('', ...r.notes.map((n) => `- ${n}`));
  return `${lines.join('\n')}\n`;
}
