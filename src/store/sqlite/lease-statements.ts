import type Database from 'better-sqlite3';
import { NOW_MS } from './job-statements';

/** Leases of vault-wide background tasks (one holder at a time, by the database's clock). */
export function leaseStatements(db: Database.Database) {
  const s = {
    acquire: db.prepare(
      `INSERT INTO leases (name, owner, lease_until) VALUES (@name, @owner, ${NOW_MS} + @leaseMs)
       ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
       WHERE leases.owner = excluded.owner OR leases.lease_until < ${NOW_MS}`,
    ),
    release: db.prepare('DELETE FROM leases WHERE name = ? AND owner = ?'),
  };
  return {
    acquire: (name: string, owner: string, leaseMs: number) => s.acquire.run({ name, owner, leaseMs }).changes === 1,
    release: (name: string, owner: string) => void s.release.run(name, owner),
  };
}
