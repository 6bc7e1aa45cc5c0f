/**
 * `pii-vault keys …`: the key lifecycle from a terminal, through the HTTP API (so the same policy
 * and audit apply as for any caller). URL and API key come from --url/--api-key or
 * PII_VAULT_URL/PII_VAULT_API_KEY (prefer the environment: flags end up in shell history).
 */
import { existsSync } from 'node:fs';
import { loadConfig, dataPath } from '../config';
import { apiClient, CliError, print } from './api-client';
import type {
  JobResponse,
  JobView,
  KeyChangeResponse,
  KeyListResponse,
  KeyView,
  RewrapResponse,
  RotateResponse,
} from '../contract/schemas';
import { MasterKeyring } from '../crypto/local-key-provider';

export interface KeysCommandOptions {
  url?: string;
  apiKey?: string;
  tenant?: string;
  all: boolean;
  version?: string;
  confirm?: string;
  kmsKeyId?: string;
  toLocal: boolean;
  wait: boolean;
  json: boolean;
  dataDir?: string;
}

export async function keysCommand(sub: string, o: KeysCommandOptions, out: NodeJS.WriteStream = process.stdout): Promise<number> {
  if (sub === 'new-master-key') return newMasterKey(o, out);
  const api = apiClient(o);
  const scope = o.all ? { all: true } : o.tenant ? { tenant: o.tenant } : {};
  switch (sub) {
    case 'list': {
      const query = o.all ? '?all=true' : o.tenant ? `?tenant=${encodeURIComponent(o.tenant)}` : '';
      const result = await api<KeyListResponse>('GET', `/v1/keys${query}`);
      if (o.json) return print(out, result);
      out.write(table(result.keys));
      return 0;
    }
    case 'rotate': {
      const result = await api<RotateResponse>('POST', '/v1/keys/rotate', scope);
      if (o.json) return print(out, result);
      for (const r of result.rotated)
        out.write(`${r.tenant}: data key v${r.version} active (v${r.previousVersion ?? '-'} now decrypt-only)\n`);
      return 0;
    }
    case 'rewrap': {
      const target = o.kmsKeyId ? { type: 'aws-kms', keyId: o.kmsKeyId } : o.toLocal ? { type: 'local' } : undefined;
      const result = await api<RewrapResponse>('POST', '/v1/keys/rewrap', target ? { target } : {});
      if (o.json) return print(out, result);
      out.write(`rewrapped ${result.rewrapped}, unchanged ${result.unchanged}, failed ${result.failed.length} → ${result.kekId}\n`);
      for (const f of result.failed) out.write(`  failed ${f.tenant}/${f.purpose}/v${f.version}: ${f.error}\n`);
      return result.failed.length ? 1 : 0;
    }
    case 'reencrypt': {
      let { job } = await api<JobResponse>('POST', '/v1/keys/reencrypt', scope);
      if (!o.wait) {
        if (o.json) return print(out, { job });
        out.write(`job ${job.id} started: ${job.total} records to re-encrypt (follow with --wait, or GET /v1/jobs/${job.id})\n`);
        return 0;
      }
      while (job.state === 'running') {
        progress(job);
        await new Promise((r) => setTimeout(r, 500));
        job = await api<JobView>('GET', `/v1/jobs/${job.id}`);
      }
      progress(job, true);
      if (o.json) return print(out, { job });
      out.write(
        `job ${job.id} ${job.state}: ${job.done} re-encrypted, ${job.failed} could not be opened${job.error ? ` (${job.error})` : ''}\n`,
      );
      return job.state === 'completed' && job.failed === 0 ? 0 : 1;
    }
    case 'retire':
    case 'destroy': {
      if (!o.version) throw new CliError(`keys ${sub} needs --version N`);
      const body = sub === 'destroy' ? { tenant: o.tenant, confirm: o.confirm } : { tenant: o.tenant };
      const result = await api<KeyChangeResponse>('POST', `/v1/keys/${encodeURIComponent(o.version)}/${sub}`, body);
      if (o.json) return print(out, result);
      out.write(`${result.key.tenant}/data/v${result.key.version} is now ${result.key.state}\n`);
      return 0;
    }
    default:
      throw new CliError(`unknown keys command "${sub}" (list, rotate, rewrap, reencrypt, retire, destroy, new-master-key)`);
  }
}

/** Adds a new active version to the local master keyring file; run `keys rewrap` afterwards. */
function newMasterKey(o: KeysCommandOptions, out: NodeJS.WriteStream): number {
  if (!o.dataDir) throw new CliError('keys new-master-key needs --data-dir');
  const config = loadConfig(o.dataDir);
  const file = dataPath(config, config.keyProvider.keyFile);
  if (!existsSync(file)) throw new CliError(`no master keyring at ${file}`);
  const keyring = MasterKeyring.load(file).withNewVersion();
  keyring.save(file, false);
  if (o.json) return print(out, { masterKeyVersion: keyring.active, keyFile: file });
  out.write(`master key v${keyring.active} is now active in ${file}; run \`pii-vault keys rewrap\` to move every data key under it\n`);
  return 0;
}

function table(keys: KeyView[]): string {
  const rows = [['TENANT', 'PURPOSE', 'VERSION', 'STATE', 'RECORDS', 'ENCRYPTIONS', 'KEK', 'CREATED']];
  for (const k of keys)
    rows.push([
      k.tenant,
      k.purpose,
      `v${k.version}`,
      k.state,
      k.records === null ? '-' : String(k.records),
      String(k.encryptions),
      k.kekId,
      k.createdAt,
    ]);
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return (
    rows
      .map((r) =>
        r
          .map((c, i) => c.padEnd(widths[i]))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

/** A progress bar on a terminal, plain lines otherwise (CI logs). */
function progress(job: JobView, last = false): void {
  const fraction = job.total > 0 ? Math.min(1, (job.done + job.failed) / job.total) : 1;
  const width = 30;
  const filled = Math.round(fraction * width);
  const line = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${Math.round(fraction * 100)}% ${job.done + job.failed}/${job.total} ${job.ratePerSecond}/s ETA ${job.etaSeconds ?? '?'}s`;
  if (process.stderr.isTTY) process.stderr.write(`\r${line}${last ? '\n' : ''}`);
  else process.stderr.write(`${line}\n`);
}
