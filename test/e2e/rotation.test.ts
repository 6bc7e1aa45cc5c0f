import { expect } from 'chai';
import Database from 'better-sqlite3';
import { ChildProcess, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { CreateAliasCommand, CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { DEV_KMS_CREDENTIALS } from '../../src/dev-kms/server';
import { CLI, initVault, serve, ServerProcess } from '../helpers/processes';
import { apiClient, LiveTraffic, randomPan } from '../helpers/load';
import { tempDir } from '../helpers/test-vault';
import { waitFor } from '../helpers/wait-for';

const AWS_ENV = { AWS_ACCESS_KEY_ID: DEV_KMS_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: DEV_KMS_CREDENTIALS.secretAccessKey };

async function waitForJob(call: ReturnType<typeof apiClient>, key: string, id: string) {
  return waitFor(
    async () => {
      const res = await call(key, 'GET', `/v1/jobs/${id}`);
      return res.body.state !== 'running' && res.body;
    },
    { what: `job ${id} to finish`, everyMs: 100 },
  );
}

async function detokenizeAll(call: ReturnType<typeof apiClient>, gateway: string, issued: Map<string, string>): Promise<string[]> {
  const wrong: string[] = [];
  const tokens = [...issued.keys()];
  for (let i = 0; i < tokens.length; i += 1000) {
    const res = await call(gateway, 'POST', '/v1/detokenize', { tokens: tokens.slice(i, i + 1000), purpose: 'charge' });
    for (const item of res.body.items) if (item.value !== issued.get(item.token)) wrong.push(JSON.stringify(item));
  }
  return wrong;
}

describe('end to end: key rotation under live traffic (real vault, real dev KMS process)', function () {
  this.timeout(120_000);
  let root: string;
  let kmsProc: ChildProcess;
  let kmsUrl: string;
  let server: ServerProcess | undefined;

  before(async () => {
    root = tempDir('pii-vault-rotation-');
    kmsProc = spawn(process.execPath, [CLI, 'dev-kms', '--port', '0', '--data', join(root, 'kms.json')], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    kmsUrl = await new Promise<string>((resolve, reject) => {
      let out = '';
      kmsProc.stdout!.on('data', (c: Buffer) => {
        out += c.toString();
        const m = /listening on (http:\/\/\S+)/.exec(out);
        if (m) resolve(m[1]);
      });
      kmsProc.once('exit', (code) => reject(new Error(`dev-kms exited ${code}`)));
    });
    const kms = new KMSClient({ region: 'us-east-1', endpoint: kmsUrl, credentials: DEV_KMS_CREDENTIALS });
    const created = await kms.send(new CreateKeyCommand({ Description: 'pii-vault e2e' }));
    await kms.send(new CreateAliasCommand({ AliasName: 'alias/pii-vault', TargetKeyId: created.KeyMetadata!.KeyId }));
  });
  afterEach(async () => {
    await server?.stop('SIGKILL');
    server = undefined;
  });
  after(() => {
    kmsProc.kill('SIGKILL');
    rmSync(root, { recursive: true, force: true });
  });

  it('rewrap local → KMS, rotate, re-encrypt once and retire with zero failed requests and no record lost', async () => {
    const dir = join(root, 'live');
    const keys = initVault(dir, {
      keyProvider: { type: 'local', keyFile: 'master.key', kms: { keyId: 'alias/pii-vault', endpoint: kmsUrl, region: 'us-east-1' } },
      reencryptBatchSize: 100,
      reencryptPauseMs: 2,
      logLevel: 'warn',
    });
    server = await serve(dir, { env: AWS_ENV });
    const call = apiClient(server.url);
    const traffic = new LiveTraffic(call, keys);
    // Each step happens while requests are being served: wait for some between steps.
    const trafficFlows = () => {
      const seen = traffic.requests;
      return waitFor(() => traffic.requests >= seen + 20, { what: '20 more requests of live traffic' });
    };
    const step = async (what: string, res: Promise<{ status: number; body: any }>) => {
      const r = await res;
      expect(r.status, `${what}: ${JSON.stringify(r.body)}`).to.be.oneOf([200, 202]);
      return r.body;
    };
    try {
      await trafficFlows();
      const rewrap = await step(
        'rewrap',
        call(keys.security, 'POST', '/v1/keys/rewrap', { target: { type: 'aws-kms', keyId: 'alias/pii-vault' } }),
      );
      expect(rewrap.failed).to.deep.equal([]);
      await trafficFlows();
      await step('rotate', call(keys.security, 'POST', '/v1/keys/rotate', {}));
      // As the README runs it: re-encrypt right after the rotation, once. No request may seal under
      // version 1 once the rotation answered, so one pass moves every record and the retire succeeds.
      const { job } = await step('reencrypt', call(keys.security, 'POST', '/v1/keys/reencrypt', {}));
      const done = await waitForJob(call, keys.security, job.id);
      expect(done.state).to.equal('completed');
      expect(done.failed).to.equal(0);
      await step('retire', call(keys.security, 'POST', '/v1/keys/1/retire', {}));
      await trafficFlows();
    } finally {
      await traffic.stop();
    }
    expect(traffic.failures, traffic.failures.slice(0, 5).join('\n')).to.deep.equal([]);
    expect(traffic.requests).to.be.greaterThan(50);
    expect(await detokenizeAll(call, keys.gateway, traffic.issued)).to.deep.equal([]);

    const listed = (await call(keys.security, 'GET', '/v1/keys?all=true')).body.keys;
    const data = listed.filter((k: { tenant: string; purpose: string }) => k.tenant === 'default' && k.purpose === 'data');
    expect(data.map((k: { version: number; state: string }) => [k.version, k.state])).to.deep.equal([
      [1, 'retired'],
      [2, 'active'],
    ]);
    expect(listed.every((k: { kekId: string }) => k.kekId.startsWith('arn:aws:kms:'))).to.equal(true);
    expect((await call(keys.security, 'GET', '/v1/audit/verify')).body.ok).to.equal(true);
    expect(await server!.stop('SIGTERM')).to.equal(0);
    server = undefined;
  });

  it('kill -9 during a re-encrypt job: after restart every record decrypts and the job completes', async () => {
    const dir = join(root, 'crash');
    const keys = initVault(dir, { reencryptBatchSize: 25, reencryptPauseMs: 15, logLevel: 'warn' });
    server = await serve(dir);
    let call = apiClient(server.url);
    const issued = new Map<string, string>();
    for (let i = 0; i < 2; i++) {
      const values = Array.from({ length: 1000 }, randomPan);
      const res = await call(keys.billing, 'POST', '/v1/tokenize', { items: values.map((value) => ({ type: 'pan', value })) });
      res.body.items.forEach((item: { token: string }, j: number) => issued.set(item.token, values[j]));
    }
    await call(keys.security, 'POST', '/v1/keys/rotate', {});
    const { job } = (await call(keys.security, 'POST', '/v1/keys/reencrypt', {})).body;
    expect(job.total).to.equal(2000);
    await waitFor(async () => (await call(keys.security, 'GET', `/v1/jobs/${job.id}`)).body.done >= 200, {
      what: 'the job to re-encrypt 200 records',
    });
    await server.stop('SIGKILL');
    server = undefined;

    const db = new Database(join(dir, 'vault.db'), { readonly: true });
    const halfway = db.prepare('SELECT state, done FROM jobs WHERE id = ?').get(job.id) as { state: string; done: number };
    const atOld = (db.prepare('SELECT count(*) AS n FROM tokens WHERE key_version = 1').get() as { n: number }).n;
    db.close();
    expect(halfway.state).to.equal('running');
    expect(halfway.done).to.be.within(200, 1999);
    expect(atOld).to.equal(2000 - halfway.done);

    server = await serve(dir);
    call = apiClient(server.url);
    const finished = await waitForJob(call, keys.security, job.id);
    expect(finished).to.include({ state: 'completed', failed: 0 });
    expect(await detokenizeAll(call, keys.gateway, issued)).to.deep.equal([]);
    const check = new Database(join(dir, 'vault.db'), { readonly: true });
    expect(check.pragma('integrity_check', { simple: true })).to.equal('ok');
    expect((check.prepare('SELECT count(*) AS n FROM tokens WHERE key_version = 1').get() as { n: number }).n).to.equal(0);
    check.close();
  });
});
