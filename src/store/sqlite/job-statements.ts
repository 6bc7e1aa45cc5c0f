import type Database from 'better-sqlite3';
import type { TransactionOps } from '../transaction-plan';
import type { JobFields, JobRecord } from '../vault-store';
import { JOB_COLUMNS, JobRow, toJob } from '../rows';
import { toJobParams } from './rows';

/** The database's clock in milliseconds since the epoch (job leases). */
export const NOW_MS = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";

/** The jobs aggregate (re-encryption jobs and their progress). */
export function jobStatements(db: Database.Database) {
  const s = {
    progress: db.prepare('UPDATE jobs SET done = done + ?, failed = failed + ?, updated_at = ? WHERE id = ?'),
    insert: db.prepare(
      `INSERT INTO jobs (id, kind, tenants, state, total, done, failed, requested_by, created_at, updated_at, finished_at, error)
       VALUES (@id, @kind, @tenants, @state, @total, @done, @failed, @requestedBy, @createdAt, @updatedAt, @finishedAt, @error)`,
    ),
    job: db.prepare('SELECT * FROM jobs WHERE id = ?'),
    unfinished: db.prepare("SELECT * FROM jobs WHERE state = 'running' ORDER BY created_at"),
    lease: db.prepare(
      `UPDATE jobs SET lease_owner = @owner, lease_until = ${NOW_MS} + @leaseMs
       WHERE id = @id AND state = 'running' AND (lease_owner IS NULL OR lease_owner = @owner OR lease_until < ${NOW_MS})`,
    ),
    release: db.prepare('UPDATE jobs SET lease_owner = NULL, lease_until = NULL WHERE id = ? AND lease_owner = ?'),
  };

  const ops: Pick<TransactionOps, 'addJobProgress'> = {
    addJobProgress: (jobId, done, failed, now) => void s.progress.run(done, failed, now, jobId),
  };

  return {
    ops,
    insert: (job: JobRecord) => void s.insert.run(toJobParams(job)),
    job: (id: string) => {
      const row = s.job.get(id) as JobRow | undefined;
      return row && toJob(row);
    },
    unfinished: () => (s.unfinished.all() as JobRow[]).map(toJob),
    lease: (id: string, owner: string, leaseMs: number) => s.lease.run({ id, owner, leaseMs }).changes === 1,
    release: (id: string, owner: string) => void s.release.run(id, owner),
    update(id: string, fields: JobFields): void {
      const keys = (Object.keys(fields) as (keyof JobFields)[]).filter((k) => k in JOB_COLUMNS);
      if (keys.length === 0) return;
      db.prepare(`UPDATE jobs SET ${keys.map((k) => `${JOB_COLUMNS[k]} = @${k}`).join(', ')} WHERE id = @id`).run({ ...fields, id });
    },
  };
}
