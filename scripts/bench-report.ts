/** The bench's tables: every measured row, PostgreSQL beside SQLite, and the targets. */

export interface Row {
  /** The scenario's name; the same on every store. */
  scenario: string;
  /** Undefined for the echo baselines. */
  store?: 'sqlite' | 'postgres';
  /** Vault instances the load was spread over (PostgreSQL); 1 for SQLite. */
  instances?: number;
  /** The fixed request rate of an open-loop row. */
  rate?: number;
  /** Requests answered 2xx. */
  requests: number;
  /** In total, over all instances. */
  reqPerSec: number;
  valuesPerSec: number;
  /** Closed loop with several instances: the worst instance's. */
  p50: number;
  p99: number;
  errors: number;
  /** Audit rows appended to the (one) chain during the scenario, all instances together, and per second. */
  auditRows?: number;
  auditPerSec?: number;
  /** The largest instance's. */
  rssMb: number;
  /**
   * CPU milliseconds per answered request: the vault processes together, every PostgreSQL process
   * (a backend whose connection closed during the scenario is not counted), and the load generator.
   */
  cpuMsPerRequest?: { vault: number; postgres: number; load: number };
  /** PostgreSQL: transactions that wrote, per answered request (a group commit serves many writes). */
  writeTransactionsPerRequest?: number;
  ratio?: number;
  p99Ratio?: number;
}

function where(row: Row): string {
  if (!row.store) return '';
  return row.store === 'sqlite' ? 'sqlite' : `postgres ×${row.instances}`;
}

function markdown(header: string[], lines: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const fmt = (cells: string[]) => '| ' + cells.map((c, i) => c.padEnd(widths[i])).join(' | ') + ' |';
  return [fmt(header), '|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|', ...lines.map(fmt)].join('\n');
}

/** CPU ms per request, per value of a batch row (three decimals: a request of the echo server costs a few hundredths of a millisecond). */
function cpuCell(cpu: Row['cpuMsPerRequest']): string {
  if (!cpu) return '';
  const f = (n: number) => n.toFixed(3);
  return cpu.postgres ? `${f(cpu.vault)}+${f(cpu.postgres)}+${f(cpu.load)}` : `${f(cpu.vault)}+${f(cpu.load)}`;
}

const fixed2 = (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? '' : n.toFixed(2));

export function resultsTable(rows: Row[]): string {
  const header = [
    'scenario',
    'store',
    'req/s',
    'values/s',
    'p50 ms',
    'p99 ms',
    'errors',
    'audit/s',
    'RSS MB',
    'CPU ms/req vault+pg+load',
    'write tx/req',
    'req/s ÷ echo',
    'p99 ÷ echo',
  ];
  return markdown(
    header,
    rows.map((r) => [
      r.scenario,
      where(r),
      String(r.reqPerSec),
      String(r.valuesPerSec),
      String(r.p50),
      String(r.p99),
      String(r.errors),
      r.auditPerSec === undefined ? '' : String(r.auditPerSec),
      String(r.rssMb),
      cpuCell(r.cpuMsPerRequest),
      fixed2(r.writeTransactionsPerRequest),
      fixed2(r.ratio),
      fixed2(r.p99Ratio),
    ]),
  );
}

function scenariosOnPostgres(rows: Row[]): string[] {
  return [...new Set(rows.filter((r) => r.store === 'postgres').map((r) => r.scenario))];
}

function find(rows: Row[], scenario: string, store: 'sqlite' | 'postgres', instances = 1): Row | undefined {
  return rows.find((r) => r.scenario === scenario && r.store === store && r.instances === instances);
}

/**
 * One line per scenario: SQLite and PostgreSQL with each instance count side by side. Closed-loop
 * rows compare values/s (higher is better); fixed-rate rows compare p99 ms (lower is better).
 */
export function comparisonTable(rows: Row[], instanceCounts: number[]): string {
  const last = instanceCounts[instanceCounts.length - 1];
  const header = [
    'scenario',
    'measure',
    'sqlite',
    ...instanceCounts.map((n) => `postgres ×${n}`),
    'postgres ×1 ÷ sqlite',
    `postgres ×${last} ÷ sqlite`,
  ];
  const lines = scenariosOnPostgres(rows).map((scenario) => {
    const sqlite = find(rows, scenario, 'sqlite');
    const open = sqlite?.rate !== undefined;
    const figure = (r: Row | undefined) => (r === undefined ? undefined : open ? r.p99 : r.valuesPerSec);
    const ratio = (n: number) => {
      const a = figure(find(rows, scenario, 'postgres', n));
      const b = figure(sqlite);
      return a === undefined || !b ? '' : fixed2(a / b);
    };
    return [
      scenario,
      open ? 'p99 ms' : 'values/s',
      String(figure(sqlite) ?? ''),
      ...instanceCounts.map((n) => String(figure(find(rows, scenario, 'postgres', n)) ?? '')),
      ratio(1),
      ratio(last),
    ];
  });
  return markdown(header, lines);
}

/** The targets for PostgreSQL, checked against this run's figures. */
export function targetChecks(rows: Row[], instanceCounts: number[]): Array<{ target: string; result: string; met: boolean }> {
  const checks: Array<{ target: string; result: string; met: boolean }> = [];
  const versusSqlite = (scenario: string, floor: number) => {
    const pg = find(rows, scenario, 'postgres');
    const sqlite = find(rows, scenario, 'sqlite');
    if (!pg || !sqlite || !sqlite.reqPerSec) return;
    const ratio = pg.reqPerSec / sqlite.reqPerSec;
    checks.push({
      target: `${scenario}: postgres ×1 ≥ ${floor}× sqlite`,
      result: `${fixed2(ratio)}× (${pg.reqPerSec} vs ${sqlite.reqPerSec} req/s)`,
      met: ratio >= floor,
    });
  };
  versusSqlite('tokenize, 1 value (durable)', 0.5);
  versusSqlite('detokenize, 1 value', 0.7);
  const batch = find(rows, 'tokenize, batch of 1,000 (random format)', 'postgres');
  if (batch) {
    checks.push({
      target: 'tokenize, batch of 1,000 (random format): postgres ×1 ≥ 25,000 values/s',
      result: `${batch.valuesPerSec} values/s`,
      met: batch.valuesPerSec >= 25_000,
    });
  }
  for (const scenario of scenariosOnPostgres(rows)) {
    const byCount = instanceCounts.map((n) => find(rows, scenario, 'postgres', n));
    if (byCount.some((r) => r === undefined) || byCount[0]!.rate !== undefined) continue;
    const figures = byCount.map((r) => r!.valuesPerSec);
    checks.push({
      target: `${scenario}: more instances never lower total throughput`,
      result: figures.join(' → ') + ' values/s',
      met: figures.every((v, i) => i === 0 || v >= figures[i - 1]),
    });
  }
  return checks;
}
