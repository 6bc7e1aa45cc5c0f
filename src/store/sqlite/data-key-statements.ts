import type Database from 'better-sqlite3';
import type { KeyPurpose } from '../../domain/keys';
import type { TransactionOps } from '../transaction-plan';
import type { DataKeyRecord } from '../vault-store';
import { DataKeyRow, toDataKey } from '../rows';

type DataKeyOps = Pick<
  TransactionOps,
  'lockKeyFamily' | 'lockDataKey' | 'lockActiveDataKey' | 'insertDataKey' | 'demoteActiveDataKey' | 'setDataKeyState' | 'addEncryptions'
>;

/**
 * The data keys aggregate. SQLite has one writer: the transaction's write lock (BEGIN IMMEDIATE)
 * already serialises every write, so the row and family locks of the plans are plain reads here.
 */
export function dataKeyStatements(db: Database.Database) {
  const s = {
    active: db.prepare("SELECT * FROM data_keys WHERE tenant = ? AND purpose = ? AND state = 'active'"),
    key: db.prepare('SELECT * FROM data_keys WHERE tenant = ? AND purpose = ? AND version = ?'),
    insert: db.prepare(
      `INSERT INTO data_keys (tenant, purpose, version, state, kek_id, wrapped, created_at, encryptions)
       VALUES (@tenant, @purpose, @version, @state, @kekId, @wrapped, @createdAt, @encryptions) ON CONFLICT DO NOTHING`,
    ),
    addEncryptions: db.prepare("UPDATE data_keys SET encryptions = encryptions + ? WHERE tenant = ? AND purpose = 'data' AND version = ?"),
    all: db.prepare('SELECT * FROM data_keys ORDER BY tenant, purpose, version'),
    demoteActive: db.prepare("UPDATE data_keys SET state = 'decrypt-only' WHERE tenant = ? AND purpose = ? AND state = 'active'"),
    // Only a key still wrapped exactly as read (not destroyed or rewrapped meanwhile) is replaced.
    updateWrapped: db.prepare(
      "UPDATE data_keys SET kek_id = ?, wrapped = ? WHERE tenant = ? AND purpose = ? AND version = ? AND kek_id = ? AND wrapped = ? AND state <> 'destroyed'",
    ),
    changeState: db.prepare(
      "UPDATE data_keys SET state = @to, wrapped = CASE WHEN @to = 'destroyed' THEN NULL ELSE wrapped END WHERE tenant = @tenant AND purpose = @purpose AND version = @version AND state = @from",
    ),
  };

  const activeKey = (tenant: string, purpose: KeyPurpose) => {
    const row = s.active.get(tenant, purpose) as DataKeyRow | undefined;
    return row && toDataKey(row);
  };
  const key = (tenant: string, purpose: KeyPurpose, version: number) => {
    const row = s.key.get(tenant, purpose, version) as DataKeyRow | undefined;
    return row && toDataKey(row);
  };
  const insert = (record: DataKeyRecord) => s.insert.run(record).changes === 1;

  const ops: DataKeyOps = {
    lockKeyFamily: () => undefined,
    lockDataKey: (ref) => key(ref.tenant, ref.purpose, ref.version),
    lockActiveDataKey: activeKey,
    insertDataKey: insert,
    demoteActiveDataKey: (tenant, purpose) => void s.demoteActive.run(tenant, purpose),
    setDataKeyState: (ref, from, to) => s.changeState.run({ ...ref, from, to }).changes === 1,
    addEncryptions: (tenant, version, seals) => void s.addEncryptions.run(seals, tenant, version),
  };

  return {
    ops,
    activeKey,
    key,
    insert,
    all: () => (s.all.all() as DataKeyRow[]).map(toDataKey),
    updateWrapped: (
      ref: { tenant: string; purpose: KeyPurpose; version: number },
      from: { kekId: string; wrapped: Buffer },
      to: { kekId: string; wrapped: Buffer },
    ) => s.updateWrapped.run(to.kekId, to.wrapped, ref.tenant, ref.purpose, ref.version, from.kekId, from.wrapped).changes === 1,
  };
}
