/**
 * `node dist/scripts/audit-size.js`: how many bytes the audit row of typical requests stores, on a
 * fresh vault: the sum of its column values as stored (text in UTF-8, blobs, 8 per number), and
 * for the batch requests also how much the database grows per request over a few repetitions.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config';
import { initDataDir } from '../src/app/init';
import { openVault } from '../src/app/open-vault';
import { SqliteStore } from '../src/store/sqlite-store';
import type { Caller } from '../src/service/context';

const REPEATS = 10;

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'pii-vault-audit-size-'));
  const dir = join(root, 'data');
  await initDataDir(dir, { env: {} });
  const opened = await openVault(loadConfig(dir, {}, {}));
  if (!(opened.store instanceof SqliteStore)) throw new Error('audit-size measures the embedded SQLite store');
  const db = opened.store.db;
  const as = (id: string, roles: string[]): Caller => ({ principal: { id, roles, tenants: ['default'] }, requestId: crypto.randomUUID() });
  const billing = () => as('billing', ['billing']);
  const support = () => as('support', ['support']);

  const lastRowBytes = (): number => {
    const row = db.prepare('SELECT * FROM audit ORDER BY seq DESC LIMIT 1').get() as Record<string, unknown>;
    let bytes = 0;
    for (const value of Object.values(row)) {
      if (typeof value === 'string') bytes += Buffer.byteLength(value);
      else if (Buffer.isBuffer(value)) bytes += value.length;
      else if (typeof value === 'number') bytes += 8;
    }
    return bytes;
  };
  const databaseBytes = () => Number(db.pragma('page_count', { simple: true })) * Number(db.pragma('page_size', { simple: true }));
  const tokenize = async (items: object[]) => (await opened.vault.tokenize(billing(), { items } as never)).items.map((i) => i.token);

  const results: Array<{ request: string; rowBytes: number; dbGrowthPerRequest?: number }> = [];
  const measure = async (request: string, run: () => Promise<unknown>, repeat = false) => {
    await run();
    const rowBytes = lastRowBytes();
    if (!repeat) return results.push({ request, rowBytes });
    const before = databaseBytes();
    for (let i = 0; i < REPEATS; i++) await run();
    results.push({ request, rowBytes, dbGrowthPerRequest: Math.round((databaseBytes() - before) / REPEATS) });
  };

  const [one] = await tokenize([{ type: 'text', value: 'x' }]);
  const texts = await tokenize(Array.from({ length: 1000 }, (_, i) => ({ type: 'text', value: `value ${i}` })));
  const pans = await tokenize(Array.from({ length: 1000 }, () => ({ type: 'pan', value: '4111111111111111' })));

  await measure('tokenize, 1 value', () => tokenize([{ type: 'text', value: 'y' }]));
  await measure('detokenize, 1 token', () => opened.vault.detokenize(support(), { tokens: [one] }));
  await measure('detokenize, 1,000 random-format tokens', () => opened.vault.detokenize(support(), { tokens: texts }), true);
  await measure('detokenize, 1,000 pan-format tokens', () => opened.vault.detokenize(support(), { tokens: pans }), true);
  await measure(
    'tokenize, 1,000 values with 1,000 subjects',
    () => tokenize(Array.from({ length: 1000 }, (_, i) => ({ type: 'text', value: `v${i}`, subject: `cust_${i}_${Math.random()}` }))),
    true,
  );

  for (const r of results) {
    const growth = r.dbGrowthPerRequest === undefined ? '' : `, database +${r.dbGrowthPerRequest} bytes per request`;
    process.stdout.write(`${r.request.padEnd(45)} audit row ${r.rowBytes} bytes${growth}\n`);
  }
  await opened.close();
  rmSync(root, { recursive: true, force: true });
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exitCode = 1;
});
