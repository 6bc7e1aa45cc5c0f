import type { DetokenizeRequest, TokenizeRequest } from '../contract/schemas';
import { authenticate } from '../policy/authenticator';
import type { Principal } from '../policy/policy';
import { listAudit, verifyAudit } from './audit-queries';
import { Caller, VaultDeps } from './context';
import { detokenize } from './detokenize';
import { deleteToken, readMetadata } from './token-admin';
import { tokenize } from './tokenize';
import { SYSTEM_TENANT } from '../crypto/key-manager';

/** The use cases, bound to their dependencies: the only surface the HTTP layer and CLI call. */
export class Vault {
  constructor(readonly deps: VaultDeps) {}

  authenticate(apiKey: string | undefined): Principal | undefined {
    return authenticate(this.deps.policy(), apiKey);
  }

  tokenize(caller: Caller, request: TokenizeRequest) {
    return tokenize(this.deps, caller, request);
  }

  detokenize(caller: Caller, request: DetokenizeRequest) {
    return detokenize(this.deps, caller, request);
  }

  readMetadata(caller: Caller, token: string) {
    return readMetadata(this.deps, caller, token);
  }

  deleteToken(caller: Caller, token: string) {
    return deleteToken(this.deps, caller, token);
  }

  listAudit(caller: Caller, after: number, limit: number) {
    return listAudit(this.deps, caller, after, limit);
  }

  verifyAudit(caller: Caller) {
    return verifyAudit(this.deps, caller);
  }

  /** Whether the database answers and the vault's own key can be unwrapped. */
  async readiness(): Promise<{ database: boolean; keys: boolean }> {
    const database = await this.deps.store.ping().then(
      () => true,
      () => false,
    );
    const keys = database && (await this.deps.keys.activeKey(SYSTEM_TENANT, 'audit').then(
      () => true,
      () => false,
    ));
    return { database, keys };
  }
}
