import Database from 'better-sqlite3';
import { PostgresSubjectKeyStore } from './postgres-subject-key-store';
import { SubjectKeyRow, toSubjectKeyRecord } from './subject-key-store';
import type { TableCounts } from './sqlite-to-postgres';

const PAGE = 500;

/**
 * Copies the subject keys of a SQLite key store file into a PostgreSQL key store (for `pii-vault
 * migrate`), page by page through getOrCreate: a key already there is kept, so a rerun after a
 * failure is safe; one there with other bytes is refused (that database holds another vault's
 * keys). Returns the row counts on both sides.
 */
export async function copySubjectKeysToPostgres(
  file: string,
  target: { url: string; poolSize: number; connectTimeoutMs: number; statementTimeoutMs: number },
): Promise<TableCounts[string]> {
  const source = new Database(file, { readonly: true, fileMustExist: true });
  const store = await PostgresSubjectKeyStore.open(target);
  try {
    const page = source.prepare(
      'SELECT * FROM subject_keys WHERE tenant > ? OR (tenant = ? AND subject_hash > ?) ORDER BY tenant, subject_hash LIMIT ?',
    );
    let copied = 0;
    let after: { tenant: string; subjectHash: Buffer } = { tenant: '', subjectHash: Buffer.alloc(0) };
    for (;;) {
      const rows = (page.all(after.tenant, after.tenant, after.subjectHash, PAGE) as SubjectKeyRow[]).map(toSubjectKeyRecord);
      if (rows.length === 0) break;
      const stored = await store.getOrCreate(rows);
      if (stored.some((s, i) => !s.wrapped.equals(rows[i].wrapped))) {
        throw new Error("the subject key database holds other keys for some of these subjects (another vault's?): use an empty one");
      }
      copied += rows.length;
      after = rows[rows.length - 1];
    }
    return { source: copied, target: await store.count() };
  } finally {
    source.close();
    await store.close();
  }
}
