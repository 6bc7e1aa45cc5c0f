import { KeyManager } from '../keys/key-manager';
import { SYSTEM_TENANT } from '../domain/tenants';
import { AuditEntry, AuditRow, AuditSealer, AuditUnavailableError, VaultStore } from '../store/vault-store';
import { auditMac } from './audit-marks';
import { ArchiveCheck, ArchiveSummary, AuditArchiver } from './audit-archive';
import { ChainVerifier, VerifyOptions, VerifyResult } from './audit-verification';

export type { ArchiveCheck, ArchiveSummary, VerifyOptions, VerifyResult };
export { AuditUnavailableError, auditMac };

/**
 * Hash-chained audit log: each row's HMAC covers its fields, its sequence number and the previous
 * row's HMAC, under the vault's audit key. Editing, deleting or reordering a row breaks the chain.
 */
export class AuditLog {
  private cachedSealer: { sealer: AuditSealer; until: number } | undefined;
  private readonly verifier: ChainVerifier;
  private readonly archiver: AuditArchiver;
  private readonly verifying = new Map<'full' | 'incremental', Promise<VerifyResult>>();

  constructor(
    private readonly store: VaultStore,
    private readonly keys: KeyManager,
  ) {
    this.verifier = new ChainVerifier(store, keys, (seq) => this.reportRejectedCheckpoint(seq));
    this.archiver = new AuditArchiver(store, keys, this.verifier, () => this.sealer());
  }

  /**
   * The sealer of the active audit key, reused for a second: every request appends a row, and
   * looking the key up each time is measurable. Rows name their key version, so a row sealed just
   * after a rotation under the previous version still verifies.
   */
  async sealer(): Promise<AuditSealer> {
    const now = Date.now();
    if (this.cachedSealer && this.cachedSealer.until > now) return this.cachedSealer.sealer;
    const { version, key } = await this.keys.activeKey(SYSTEM_TENANT, 'audit');
    const sealer: AuditSealer = { keyVersion: version, seal: (prevHash, seq, entry) => auditMac(key, prevHash, seq, entry, version) };
    this.cachedSealer = { sealer, until: now + 1_000 };
    return sealer;
  }

  /** Appends one row; throws AuditUnavailableError when it cannot be made durable. */
  async append(entry: AuditEntry): Promise<AuditRow> {
    try {
      return await this.store.appendAudit({ entry, sealer: await this.sealer() });
    } catch (err) {
      throw err instanceof AuditUnavailableError ? err : new AuditUnavailableError(err);
    }
  }

  /**
   * Verifies the chain (see ChainVerifier): incrementally from the checkpoint, or every row with
   * `full`. Concurrent calls of one kind share one run instead of each doing the work again.
   */
  verify(options: VerifyOptions = {}): Promise<VerifyResult> {
    const kind = options.full ? 'full' : 'incremental';
    let running = this.verifying.get(kind);
    if (!running) {
      running = this.verifier.verify(options).finally(() => this.verifying.delete(kind));
      this.verifying.set(kind, running);
    }
    return running;
  }

  /** Exports the verified rows before `beforeSeq` to a new file `out`, then prunes them (see AuditArchiver). */
  archive(beforeSeq: number, out: string): Promise<ArchiveSummary> {
    return this.archiver.archive(beforeSeq, out);
  }

  /** Verifies an archive file and that this vault recorded its segment as archived. */
  verifyArchive(file: string): Promise<ArchiveCheck> {
    return this.archiver.check(file, { recorded: true });
  }

  private async reportRejectedCheckpoint(seq: number): Promise<void> {
    await this.append({
      ts: new Date().toISOString(),
      requestId: 'system',
      principal: 'system',
      tenant: null,
      action: 'audit:checkpoint-rejected',
      types: [],
      tokens: [],
      purpose: null,
      outcome: 'deny',
      reason: `the stored verification checkpoint (row ${seq}) failed its MAC; the whole chain was verified instead`,
      subjects: [],
    });
  }
}
