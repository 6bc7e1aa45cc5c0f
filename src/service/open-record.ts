import { IntegrityError, open } from '../crypto/aead';
import type { TokenRecord } from '../store/vault-store';
import type { VaultDeps } from './context';
import { SUBJECT_KEYED_BINDING, recordAad } from './record-crypto';
import { ERASED, openSubjectKeyedValue } from './subject-layer';

/**
 * A record's value, opened under its binding; undefined when its data key is gone (destroyed or
 * missing), when the ciphertext or any column it is bound to was altered, or when it claims binding
 * 1 after the vault stopped accepting those. ERASED when its per-subject key was destroyed.
 */
export async function openRecord(deps: VaultDeps, record: TokenRecord): Promise<Buffer | typeof ERASED | undefined> {
  if (record.binding === 1 && !deps.recordBinding.acceptsLegacy()) return undefined;
  try {
    // A tampered key record fails like a tampered value.
    const key = await deps.keys.keyVersion(record.tenant, 'data', record.keyVersion);
    if (!key) return undefined;
    const opened = open(key, record, recordAad(record));
    return record.binding === SUBJECT_KEYED_BINDING ? await openSubjectKeyedValue(deps, record, opened) : opened;
  } catch (err) {
    if (err instanceof IntegrityError) return undefined;
    throw err;
  }
}
