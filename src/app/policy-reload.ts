import type { Logger } from '../logger';
import type { OpenedVault } from './open-vault';
import { errorForLog } from '../service/log-error';

/** What made the vault re-read its policy; it names the reload's audit row (its request id). */
export type PolicyReloadTrigger = 'sighup' | 'policy-file-changed';

/**
 * Re-reads the policy file (SIGHUP, or a change of the file); the old policy stays in force if the new one is invalid. The
 * reload, good or refused, is logged and audited; an audit row that cannot be written is logged.
 */
export async function reloadPolicy(
  opened: OpenedVault,
  logger: Logger,
  trigger: PolicyReloadTrigger = 'sighup',
): Promise<{ ok: boolean; reason: string }> {
  let outcome: { ok: boolean; reason: string };
  try {
    const policy = opened.reloadPolicy();
    outcome = { ok: true, reason: `${Object.keys(policy.principals).length} principals, ${Object.keys(policy.roles).length} roles` };
  } catch (err) {
    outcome = { ok: false, reason: (err as Error).message };
  }
  logger[outcome.ok ? 'info' : 'error'](
    { reason: outcome.reason, trigger },
    outcome.ok ? 'policy reloaded' : 'policy reload failed; the previous policy stays in force',
  );
  try {
    await opened.audit.append({
      ts: new Date().toISOString(),
      requestId: trigger,
      principal: 'system',
      tenant: null,
      action: 'policy:reload',
      types: [],
      tokens: [],
      purpose: null,
      outcome: outcome.ok ? 'allow' : 'deny',
      reason: outcome.reason,
      subjects: [],
    });
  } catch (err) {
    logger.error({ error: errorForLog(err), reloaded: outcome.ok }, 'the policy reload could not be audited');
  }
  return outcome;
}
