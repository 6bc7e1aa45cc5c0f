import type { AccessLogRequest, ConsentRequest, DetokenizeRequest, SubjectRequest, TokenizeRequest } from '../contract/schemas';
import { authenticate, authenticateCertificate } from '../policy/authenticator';
import type { Principal } from '../policy/policy';
import { listAudit, verifyAudit } from './audit-queries';
import { Caller, KekTarget, VaultDeps } from './context';
import { detokenize } from './detokenize';
import { readPolicyReport } from './policy-report';
import { deleteToken, readMetadata } from './token-admin';
import { tokenize } from './tokenize';
import { changeConsent, eraseSubject, exportSubject, subjectAccessLog } from './subjects';
import { SYSTEM_TENANT } from '../domain/tenants';
import { destroyKey, listKeys, retireKey, rewrapKeys, rotateKeys, TenantScope } from './keys';
import { ReencryptJobs } from './reencrypt-job';
import { PurgeTask, purgeExpired } from './purge';
import { AuthFailureAudit } from './auth-failures';
import { errorForLog } from './log-error';
import { refuseUngranted } from './grants';
import { Action, mayEver } from '../policy/policy';

/** The use cases, bound to their dependencies: the only surface the HTTP layer and CLI call. */
export class Vault {
  readonly jobs: ReencryptJobs;
  readonly authFailures: AuthFailureAudit;
  /** The background purge of expired records (started by the serving process only). */
  readonly purge: PurgeTask;

  constructor(readonly deps: VaultDeps) {
    this.jobs = new ReencryptJobs(deps);
    this.purge = new PurgeTask(deps);
    this.authFailures = new AuthFailureAudit(deps);
  }

  authenticate(apiKey: string | undefined): Principal | undefined {
    return authenticate(this.deps.policy(), apiKey);
  }

  authenticateCertificate(fingerprintHex: string): Principal | undefined {
    return authenticateCertificate(this.deps.policy(), fingerprintHex);
  }

  /**
   * Audits a refused authentication, rate-summarised under attack (see AuthFailureAudit). The
   * address is the client's; `key` what its failures are counted under (default: the address).
   */
  recordAuthFailure(requestId: string, address: string, reason: string, key = address): Promise<void> {
    return this.authFailures.record(requestId, address, key, reason);
  }

  /** Whether some grant gives the principal the action at all, on any tenant, type or purpose. */
  hasGrant(principal: Principal, action: Action): boolean {
    return mayEver(this.deps.policy(), principal, action);
  }

  /** Audits, then refuses, a caller that `hasGrant` said no to; see grants.ts. */
  refuseUngranted(caller: Caller, action: Action, auditAction?: string): Promise<never> {
    return refuseUngranted(this.deps, caller, action, auditAction);
  }

  tokenize(caller: Caller, request: TokenizeRequest) {
    return tokenize(this.deps, caller, request);
  }

  detokenize(caller: Caller, request: DetokenizeRequest) {
    return detokenize(this.deps, caller, request);
  }

  readMetadata(caller: Caller, token: string, tenant?: string) {
    return readMetadata(this.deps, caller, token, tenant);
  }

  deleteToken(caller: Caller, token: string, tenant?: string) {
    return deleteToken(this.deps, caller, token, tenant);
  }

  exportSubject(caller: Caller, request: SubjectRequest) {
    return exportSubject(this.deps, caller, request);
  }

  subjectAccessLog(caller: Caller, request: AccessLogRequest) {
    return subjectAccessLog(this.deps, caller, request);
  }

  eraseSubject(caller: Caller, request: SubjectRequest) {
    return eraseSubject(this.deps, caller, request);
  }

  changeConsent(caller: Caller, request: ConsentRequest) {
    return changeConsent(this.deps, caller, request);
  }

  listAudit(caller: Caller, after: number, limit: number) {
    return listAudit(this.deps, caller, after, limit);
  }

  verifyAudit(caller: Caller) {
    return verifyAudit(this.deps, caller);
  }

  policyReport(caller: Caller) {
    return readPolicyReport(this.deps, caller);
  }

  listKeys(caller: Caller, scope: TenantScope) {
    return listKeys(this.deps, caller, scope);
  }

  rotateKeys(caller: Caller, scope: TenantScope) {
    return rotateKeys(this.deps, caller, scope);
  }

  rewrapKeys(caller: Caller, target: KekTarget | undefined) {
    return rewrapKeys(this.deps, caller, target);
  }

  retireKey(caller: Caller, tenant: string, version: number) {
    return retireKey(this.deps, caller, tenant, version);
  }

  destroyKey(caller: Caller, tenant: string, version: number, confirm: string | undefined) {
    return destroyKey(this.deps, caller, tenant, version, confirm);
  }

  async startReencrypt(caller: Caller, scope: TenantScope) {
    return { job: await this.jobs.start(caller, scope) };
  }

  jobStatus(caller: Caller, id: string) {
    return this.jobs.view(caller, id);
  }

  /** Deletes every expired record now (or, dry, counts them), in batches; `pii-vault purge`. */
  purgeExpired(caller: Caller, options: { dryRun?: boolean } = {}) {
    return purgeExpired(this.deps, caller, options);
  }

  /**
   * Whether the database answers, the vault's own key opens, the primary KEK is reachable, and
   * (only when one is configured) the subject key store answers.
   */
  async readiness(): Promise<{ database: boolean; keys: boolean; keyProvider: boolean; subjectKeys?: boolean }> {
    const check = async (name: string, probe: () => Promise<unknown>) => {
      try {
        if ((await probe()) !== false) return true;
        this.deps.logger.warn({ check: name }, 'readiness check failed');
      } catch (err) {
        this.deps.logger.warn({ check: name, error: errorForLog(err) }, 'readiness check failed');
      }
      return false;
    };
    const database = await check('database', () => this.deps.store.ping());
    const keys = database && (await check('keys', () => this.deps.keys.activeKey(SYSTEM_TENANT, 'audit')));
    const keyProvider = await check('keyProvider', () => this.deps.keks.provider.healthy());
    const subjectKeys = this.deps.subjectKeys.keys;
    if (!subjectKeys) return { database, keys, keyProvider };
    return { database, keys, keyProvider, subjectKeys: await check('subjectKeys', () => subjectKeys.ping()) };
  }
}
