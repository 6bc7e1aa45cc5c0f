import { readFileSync } from 'node:fs';
import { PolicyDocument, PolicyError, validatePolicy } from './policy';
import { DEFAULT_TENANT } from '../domain/tenants';

export function loadPolicyFile(path: string): PolicyDocument {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new PolicyError(`${path}: ${code === 'ENOENT' ? 'not found' : (code ?? 'not valid JSON')}`);
  }
  try {
    return validatePolicy(parsed);
  } catch (err) {
    throw new PolicyError(`${path}: ${(err as Error).message}`);
  }
}

export const STARTER_PRINCIPALS = ['billing', 'gateway', 'support', 'security'] as const;

/**
 * The policy `init` writes: billing tokenizes but never sees values; the gateway adapter sees PANs
 * in plain for purpose `charge` only; support sees masked values; security reads audit and
 * metadata, manages keys, reads the policy report and serves data subject requests (export, access
 * log, erasure, consent) in every tenant, never seeing values; billing may also change a subject's consent.
 */
export function starterPolicy(keyHashes: Record<(typeof STARTER_PRINCIPALS)[number], string>): PolicyDocument {
  const createdAt = new Date().toISOString();
  const principal = (role: (typeof STARTER_PRINCIPALS)[number]) => ({
    roles: [role],
    // The security team manages keys and reads audit across every tenant.
    tenants: role === 'security' ? ['*'] : [DEFAULT_TENANT],
    apiKeys: [{ sha256: keyHashes[role], createdAt }],
  });
  return {
    version: 1,
    roles: {
      billing: [{ actions: ['tokenize', 'read-metadata', 'delete'], types: ['*'] }, { actions: ['subject:consent'] }],
      gateway: [{ actions: ['detokenize'], types: ['pan'], reveal: 'plain', purposes: ['charge'] }],
      support: [
        { actions: ['detokenize'], types: ['*'], reveal: 'masked' },
        { actions: ['read-metadata'], types: ['*'] },
      ],
      security: [
        { actions: ['audit:read', 'keys:read', 'keys:rotate', 'keys:destroy', 'policy:read'] },
        { actions: ['subject:export', 'subject:erase', 'subject:consent'] },
        { actions: ['read-metadata'], types: ['*'] },
      ],
    },
    principals: {
      billing: principal('billing'),
      gateway: principal('gateway'),
      support: principal('support'),
      security: principal('security'),
    },
  };
}
