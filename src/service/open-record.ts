import { IntegrityError, open } from '../crypto/aead';
import type { TokenRecord } from '../store/vault-store';
import type { VaultDeps } from './context';
import { recordAad } from './record-crypto';

/**
 * A record's value, opened under its binding; undefined when its data key is gone (destroyed or
 * missing), when the ciphertext or any column it is bound to was altered, or when it claims binding
 * 1 after the vault stopped accepting those.
 */
export async function openRecord(deps: VaultDeps, record: TokenRecord): Promise<Buffer | undefined> {
  if (record.binding === 1 && !deps.recordBinding.acceptsLegacy()) return undefined;
  try {
    // A tampered key record fails like a tampered value.
    const key = await deps.keys.keyVersion(record.tenant, 'data', record.keyVersion);
    if (!key) return undefined;
    return open(key, record, recordAad(record));
  } catch (err) {
    if (err instanceof IntegrityError) return undefined;
    throw err;
  }
}
