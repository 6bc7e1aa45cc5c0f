import { expect } from 'chai';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { cli, serve, ServerProcess } from '../helpers/processes';
import { apiClient } from '../helpers/load';
import { tempDir } from '../helpers/test-vault';

describe('end to end: pii-vault keys … against a running vault', function () {
  this.timeout(60_000);
  let root: string;
  let dir: string;
  let keys: Record<string, string>;
  let server: ServerProcess;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    root = tempDir('pii-vault-keys-cli-');
    dir = join(root, 'vault');
    keys = JSON.parse(cli(['init', '--data-dir', dir, '--json']).stdout).apiKeys;
    server = await serve(dir);
    env = { PII_VAULT_URL: server.url, PII_VAULT_API_KEY: keys.security };
    const call = apiClient(server.url);
    await call(keys.billing, 'POST', '/v1/tokenize', { items: Array.from({ length: 120 }, (_, i) => ({ type: 'text', value: `v${i}` })) });
  });
  after(async () => {
    await server.stop('SIGKILL');
    rmSync(root, { recursive: true, force: true });
  });

  const keysCli = (args: string[], extraEnv: NodeJS.ProcessEnv = {}) => cli(['keys', ...args], { ...env, ...extraEnv });

  it('list prints a table, and JSON with --json', () => {
    const table = keysCli(['list']);
    expect(table.status, table.stderr).to.equal(0);
    expect(table.stdout).to.match(/^TENANT\s+PURPOSE\s+VERSION\s+STATE\s+RECORDS/m);
    expect(table.stdout).to.match(/default\s+data\s+v1\s+active\s+120/);
    const json = JSON.parse(keysCli(['list', '--json']).stdout);
    expect(json.keys.find((k: { purpose: string }) => k.purpose === 'data').records).to.equal(120);
  });

  it('rotate, reencrypt --wait (progress on stderr), retire and destroy', () => {
    expect(keysCli(['rotate']).stdout).to.match(/default: data key v2 active \(v1 now decrypt-only\)/);
    const re = keysCli(['reencrypt', '--wait']);
    expect(re.status, re.stderr).to.equal(0);
    expect(re.stderr).to.match(/\[#+\] 100% 120\/120/);
    expect(re.stdout).to.match(/completed: 120 re-encrypted, 0 could not be opened/);
    expect(keysCli(['retire', '--version', '1']).stdout).to.match(/default\/data\/v1 is now retired/);
    const refused = keysCli(['destroy', '--version', '1']);
    expect(refused.status).to.equal(1);
    expect(refused.stderr).to.match(/confirmation_required.*destroy default\/data\/v1/);
    const destroyed = keysCli(['destroy', '--version', '1', '--confirm', 'destroy default/data/v1', '--json']);
    expect(JSON.parse(destroyed.stdout).key.state).to.equal('destroyed');
  });

  it('new-master-key adds a keyring version that rewrap then moves every data key to', () => {
    const added = keysCli(['new-master-key', '--data-dir', dir]);
    expect(added.status, added.stderr).to.equal(0);
    expect(added.stdout).to.match(/master key v2 is now active/);
    expect(JSON.parse(readFileSync(join(dir, 'master.key'), 'utf8')).keys).to.have.length(2);
    const rewrap = keysCli(['rewrap']);
    expect(rewrap.status, rewrap.stderr).to.equal(0);
    expect(rewrap.stdout).to.match(/failed 0 → local:v2/);
    const kekIds = JSON.parse(keysCli(['list', '--all', '--json']).stdout)
      .keys.filter((k: { state: string }) => k.state !== 'destroyed')
      .map((k: { kekId: string }) => k.kekId);
    expect(new Set(kekIds)).to.deep.equal(new Set(['local:v2']));
  });

  it('says clearly what is wrong: no API key, a forbidden caller, an unreachable vault', () => {
    expect(keysCli(['list'], { PII_VAULT_API_KEY: '' }).stderr).to.match(/PII_VAULT_API_KEY/);
    expect(keysCli(['rotate'], { PII_VAULT_API_KEY: keys.support }).stderr).to.match(/403 forbidden/);
    expect(keysCli(['list'], { PII_VAULT_URL: 'http://127.0.0.1:1' }).stderr).to.match(/cannot reach the vault/);
    expect(keysCli(['frobnicate']).stderr).to.match(/unknown keys command/);
  });
});
