import { expect } from 'chai';
import { rmSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { cli, serve, ServerProcess } from '../helpers/processes';
import { apiClient } from '../helpers/load';
import { tempDir } from '../helpers/test-vault';

describe('end to end: pii-vault subjects … against a running vault', function () {
  this.timeout(60_000);
  let root: string;
  let keys: Record<string, string>;
  let server: ServerProcess;
  let call: ReturnType<typeof apiClient>;
  let token: string;

  before(async () => {
    root = tempDir('pii-vault-subjects-cli-');
    const dir = join(root, 'vault');
    keys = JSON.parse(cli(['init', '--data-dir', dir, '--json']).stdout).apiKeys;
    server = await serve(dir);
    call = apiClient(server.url);
    const made = await call(keys.billing, 'POST', '/v1/tokenize', {
      purposes: ['charge'],
      items: [{ type: 'pan', value: '4242424242424242', subject: 'cust-cli-1' }],
    });
    token = made.body.items[0].token;
  });
  after(async () => {
    await server.stop('SIGKILL');
    rmSync(root, { recursive: true, force: true });
  });

  /** The audit log, on a connection of its own (a kept-alive one may be closed by the server while the CLI runs). */
  const auditRows = () =>
    new Promise<{ items: { principal: string; action: string }[] }>((resolve, reject) => {
      const req = http.get(
        `${server.url}/v1/audit?limit=1000`,
        { agent: false, headers: { Authorization: `Bearer ${keys.security}` } },
        (res) => {
          let text = '';
          res.on('data', (chunk) => (text += chunk));
          res.on('end', () => resolve(JSON.parse(text)));
        },
      );
      req.on('error', reject);
    });

  const subjectsCli = (args: string[], who = 'security', input = 'cust-cli-1\n') =>
    cli(['subjects', ...args], { PII_VAULT_URL: server.url, PII_VAULT_API_KEY: keys[who] }, input);

  it('consent, export, access-log and erase read the subject from standard input and are audited as the key’s principal', async () => {
    const consent = subjectsCli(['consent', '--withdraw', 'charge'], 'billing');
    expect(consent.status, consent.stderr).to.equal(0);
    expect(consent.stdout).to.equal('tenant default: consented purposes: none\n');

    const exported = subjectsCli(['export', '--json']);
    expect(exported.status, exported.stderr).to.equal(0);
    expect(JSON.parse(exported.stdout)).to.deep.include({ tenant: 'default', consentedPurposes: [] });
    expect(JSON.parse(exported.stdout).records.map((r: { token: string }) => r.token)).to.deep.equal([token]);
    expect(subjectsCli(['export']).stdout).to.match(
      /^tenant default: 1 records; consented purposes: none\n\d{16} {2}pan {2}\S+ {2}redacted {2}-\n$/,
    );

    const log = subjectsCli(['access-log', '--from', '2000-01-01T00:00:00Z']);
    expect(log.status, log.stderr).to.equal(0);
    expect(log.stdout).to.match(/ billing {2}tokenize {2}allow /);
    expect(log.stdout).to.match(/ security {2}subject:export {2}allow /);
    expect(log.stdout).not.to.contain('cust-cli-1');

    const erased = subjectsCli(['erase', '--subject', 'cust-cli-1']);
    expect(erased.stdout).to.equal('erased 1 records of the subject in tenant default\n');
    const rows = await auditRows();
    expect(rows.items.filter((r) => r.action.startsWith('subject:')).map((r) => `${r.principal} ${r.action}`)).to.include.members([
      'billing subject:consent',
      'security subject:export',
      'security subject:access-log',
      'security subject:erase',
    ]);
    expect(JSON.stringify(rows)).not.to.contain('cust-cli-1');
  });

  it('refusals and mistakes: 403 from the API, no subject, nothing to change, unknown options', () => {
    const refused = subjectsCli(['erase'], 'gateway');
    expect(refused.status).to.equal(1);
    expect(refused.stderr).to.match(/403 forbidden/);
    const empty = subjectsCli(['export'], 'security', '');
    expect(empty.status).to.equal(1);
    expect(empty.stderr).to.match(/no subject id on standard input/);
    expect(subjectsCli(['consent'], 'billing').stderr).to.match(/needs --grant/);
    expect(subjectsCli(['erase', '--grant', 'x']).status).to.equal(2);
  });
});
