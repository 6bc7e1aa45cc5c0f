import { expect } from 'chai';
import { MasterKeyring } from '../../src/crypto/local-key-provider';
import { createLogger } from '../../src/logger';
import { reloadPolicy } from '../../src/app/policy-reload';
import { AuditUnavailableError, StoreUnavailableError } from '../../src/store/vault-store';
import { createTestVault, TestVault } from '../helpers/test-vault';

interface LogLine {
  level: number;
  msg: string;
  error?: { name: string; code?: string; message?: string };
  [field: string]: unknown;
}

const WARN = 40;
const ERROR = 50;
const SECRET = '4111111111111111';

/** Issue 10, item 19: failures no caller is told about are logged (class and code, never values). */
describe('failures nobody waits for are logged, without values', () => {
  let v: TestVault;
  let lines: LogLine[];
  let raw: string[];
  beforeEach(async () => {
    lines = [];
    raw = [];
    const logger = createLogger('info', {
      write: (line: string) => {
        raw.push(line);
        lines.push(JSON.parse(line));
      },
    });
    v = await createTestVault({}, { logger });
  });
  afterEach(() => v.close());

  const logged = (msg: string) => lines.filter((l) => l.msg === msg);
  const failWith = (err: Error) => () => Promise.reject(err);

  it('a policy reload whose audit row cannot be written', async () => {
    v.opened.audit.append = failWith(new AuditUnavailableError(new Error(`disk full writing ${SECRET}`)));
    const outcome = await reloadPolicy(v.opened, createLogger('info', { write: (l: string) => lines.push(JSON.parse(l)) }));
    expect(outcome.ok).to.equal(true);
    const [line] = logged('the policy reload could not be audited');
    expect(line).to.include({ level: ERROR, reloaded: true });
    expect(line.error).to.deep.equal({ name: 'AuditUnavailableError', code: 'audit_unavailable', message: 'audit log cannot be written' });
    expect(JSON.stringify(lines)).not.to.contain(SECRET);
  });

  it('a failed re-encryption job, and a failure to record that it failed', async () => {
    await v.tokenize([{ type: 'text', value: 'x' }]);
    await v.http.post('/v1/keys/rotate').set(v.as('security')).send({});
    const store = v.opened.store;
    store.recordsBehind = failWith(new TypeError(`cannot read ${SECRET}`));
    const started = await v.http.post('/v1/keys/reencrypt').set(v.as('security')).send({});
    await v.opened.vault.jobs.settled(started.body.job.id);
    const [failed] = logged('re-encryption job failed');
    expect(failed).to.include({ level: ERROR, job: started.body.job.id });
    expect(failed.error).to.deep.equal({ name: 'TypeError' });
    const job = await v.http.get(`/v1/jobs/${started.body.job.id}`).set(v.as('security'));
    expect(job.body).to.include({ state: 'failed', error: 'TypeError' });

    const updateJob = store.updateJob.bind(store);
    store.updateJob = (id, fields) =>
      fields.state === 'failed' ? Promise.reject(new StoreUnavailableError('database unavailable (SQLITE_FULL)')) : updateJob(id, fields);
    const again = await v.http.post('/v1/keys/reencrypt').set(v.as('security')).send({});
    await v.opened.vault.jobs.settled(again.body.job.id);
    const [unmarked] = logged('a failed re-encryption job could not be marked failed');
    expect(unmarked.error).to.deep.equal({
      name: 'StoreUnavailableError',
      code: 'store_unavailable',
      message: 'database unavailable (SQLITE_FULL)',
    });
    expect(JSON.stringify(lines)).not.to.contain(SECRET);
  });

  it('a data key that cannot be rewrapped', async () => {
    const file = `${v.dir}/master.key`;
    MasterKeyring.load(file).withNewVersion().save(file, false);
    v.opened.store.updateWrappedKey = failWith(new StoreUnavailableError('database unavailable (SQLITE_BUSY)'));
    const res = await v.http.post('/v1/keys/rewrap').set(v.as('security')).send({});
    expect(res.body.failed.length).to.be.greaterThan(0);
    const warned = logged('a data key could not be rewrapped');
    expect(warned).to.have.length(res.body.failed.length);
    expect(warned[0]).to.include({ level: WARN });
    expect(warned[0].error).to.deep.equal({
      name: 'StoreUnavailableError',
      code: 'store_unavailable',
      message: 'database unavailable (SQLITE_BUSY)',
    });
  });

  it('a readiness check that fails', async () => {
    v.opened.keks.provider.healthy = async () => false;
    v.opened.store.ping = failWith(new StoreUnavailableError('database unavailable (SQLITE_IOERR)'));
    expect((await v.http.get('/readyz')).status).to.equal(503);
    const checks = logged('readiness check failed');
    expect(checks.map((l) => [l.level, l.check, l.error?.name])).to.deep.equal([
      [WARN, 'database', 'StoreUnavailableError'],
      [WARN, 'keyProvider', undefined],
    ]);
  });

  it('a sealed subject or a value that fails its integrity check', async () => {
    const [token] = await v.tokenize([{ type: 'pan', value: SECRET, subject: 'cust_42' }]);
    v.opened.store.db.prepare('UPDATE tokens SET subject_sealed = zeroblob(length(subject_sealed))').run();
    const meta = await v.http.get(`/v1/tokens/${token}`).set(v.as('billing'));
    expect(meta.body.subject).to.equal(null);
    expect(logged('a sealed subject id failed its integrity check')[0]).to.include({ level: WARN, tenant: 'default', keyVersion: 1 });
    v.opened.store.db.prepare("UPDATE tokens SET ciphertext = x'00' || substr(ciphertext, 2)").run();
    const res = await v.http
      .post('/v1/detokenize')
      .set(v.as('support'))
      .send({ tokens: [token] });
    expect(res.body.items[0].error.code).to.equal('integrity_failed');
    expect(logged('records failed their integrity check on detokenize')[0]).to.include({ level: WARN, records: 1 });
    expect(raw.join('')).not.to.contain(token);
    expect(raw.join('')).not.to.contain('cust_42');
  });

  it('a summary of failed authentications that cannot be audited', async () => {
    for (let i = 0; i < 7; i++) await v.http.get('/v1/keys').set('Authorization', 'Bearer pvk_wrong');
    v.opened.audit.append = failWith(new AuditUnavailableError(new Error('locked')));
    await v.opened.vault.authFailures.flush();
    const [line] = logged('the summary of failed authentications could not be audited');
    expect(line).to.include({ level: ERROR, failures: 2 });
    expect(line.error?.name).to.equal('AuditUnavailableError');
  });
});
