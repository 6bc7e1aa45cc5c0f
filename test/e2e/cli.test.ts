import { expect } from 'chai';
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cli, serve, ServerProcess } from '../helpers/processes';
import { tempDir } from '../helpers/test-vault';
import { waitFor } from '../helpers/wait-for';

type Keys = Record<'billing' | 'gateway' | 'support' | 'security', string>;

describe('end to end: the real CLI and server process', function () {
  this.timeout(60_000);
  let root: string;
  let dir: string;
  let keys: Keys;
  let server: ServerProcess | undefined;

  before(() => {
    root = tempDir('pii-vault-e2e-');
    dir = join(root, 'vault');
    const init = cli(['init', '--data-dir', dir, '--json']);
    expect(init.status, init.stderr).to.equal(0);
    const parsed = JSON.parse(init.stdout);
    keys = parsed.apiKeys;
    expect(parsed.dataDir).to.equal(dir);
  });
  afterEach(async () => {
    await server?.stop('SIGKILL');
    server = undefined;
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  const call = async (path: string, key: string, body?: object) => {
    const res = await fetch(`${server!.url}${path}`, {
      method: body ? 'POST' : 'GET',
      headers: { Authorization: `Bearer ${key}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    return { status: res.status, body: (await res.json()) as any };
  };

  it('init creates a private data dir, a 0600 key file and prints four API keys once', () => {
    expect(statSync(dir).mode & 0o777).to.equal(0o700);
    expect(statSync(join(dir, 'master.key')).mode & 0o777).to.equal(0o600);
    expect(Object.keys(keys).sort()).to.deep.equal(['billing', 'gateway', 'security', 'support']);
    for (const key of Object.values(keys)) expect(key).to.match(/^pvk_[A-Za-z0-9_-]{43}$/);
    const stored = readFileSync(join(dir, 'policy.json'), 'utf8');
    for (const key of Object.values(keys)) expect(stored).not.to.contain(key);
  });

  it('init refuses an existing data dir and changes nothing', () => {
    const before = readFileSync(join(dir, 'policy.json'), 'utf8');
    const again = cli(['init', '--data-dir', dir]);
    expect(again.status).to.not.equal(0);
    expect(again.stderr).to.match(/already holds a vault.*--force/);
    expect(readFileSync(join(dir, 'policy.json'), 'utf8')).to.equal(before);
  });

  it('serves all four roles as the starter policy says', async () => {
    server = await serve(dir);
    expect(server.url).to.match(/^http:\/\/127\.0\.0\.1:\d+$/);
    const tok = await call('/v1/tokenize', keys.billing, {
      items: [
        { type: 'pan', value: '4111 1111 1111 1111' },
        { type: 'email', value: 'jane@example.com' },
      ],
    });
    expect(tok.status).to.equal(200);
    const [pan, email] = tok.body.items.map((i: { token: string }) => i.token);

    const gateway = await call('/v1/detokenize', keys.gateway, { tokens: [pan, email], purpose: 'charge' });
    expect(gateway.body.items[0]).to.include({ value: '4111111111111111', reveal: 'plain' });
    expect(gateway.body.items[1].error.code).to.equal('forbidden');
    const support = await call('/v1/detokenize', keys.support, { tokens: [pan] });
    expect(support.body.items[0]).to.include({ value: '************1111', reveal: 'masked' });
    expect((await call('/v1/detokenize', keys.billing, { tokens: [pan] })).status).to.equal(403);
    expect((await call('/v1/detokenize', keys.security, { tokens: [pan] })).status).to.equal(403);
    expect((await call(`/v1/tokens/${pan}`, keys.security)).body.type).to.equal('pan');
    expect((await call('/v1/audit/verify', keys.security)).body.ok).to.equal(true);
    expect((await call('/v1/audit', 'pvk_wrong')).status).to.equal(401);

    // Logs are JSON lines and carry neither values nor keys.
    const logs = server.output();
    expect(logs).not.to.contain('4111111111111111');
    expect(logs).not.to.contain('4111 1111');
    for (const key of Object.values(keys)) expect(logs).not.to.contain(key);

    expect(await server.stop('SIGTERM')).to.equal(0);
    server = undefined;
  });

  it('SIGHUP reloads the policy (a new key works at once), keeps the old policy when the file is invalid, and audits both', async () => {
    server = await serve(dir);
    const policyFile = join(dir, 'policy.json');
    const original = readFileSync(policyFile, 'utf8');
    const policy = JSON.parse(original);
    const newKey = 'pvk_' + 'n'.repeat(43);
    policy.principals.auditor = {
      roles: ['security'],
      tenants: ['*'],
      apiKeys: [{ sha256: createHash('sha256').update(newKey).digest('hex') }],
    };
    writeFileSync(policyFile, JSON.stringify(policy));
    server.proc.kill('SIGHUP');
    await waitFor(async () => (await call('/v1/audit/verify', newKey)).status === 200, {
      what: 'the reloaded policy to accept the new key',
    });

    writeFileSync(policyFile, '{"version": 1, "roles": {}, "principals": {"x": {"roles": ["nope"]');
    server.proc.kill('SIGHUP');
    // The server also notices the file change by itself (audited as policy-file-changed); these are the SIGHUP reloads.
    const sighupReloads = async () =>
      (await call('/v1/audit?limit=1000', newKey)).body.items.filter(
        (r: { action: string; requestId: string }) => r.action === 'policy:reload' && r.requestId === 'sighup',
      );
    const rows = await waitFor(
      async () => {
        const reloads = await sighupReloads();
        return reloads.length >= 2 && reloads;
      },
      { what: 'the audit row of the second SIGHUP reload' },
    );
    expect((await call('/v1/audit/verify', newKey)).status, 'the previous policy stays in force').to.equal(200);
    expect(rows.map((r: { outcome: string }) => r.outcome)).to.deep.equal(['allow', 'deny']);
    expect(server.output()).to.match(/policy reload failed/);
    writeFileSync(policyFile, original);
    await server.stop();
    server = undefined;
  });

  it('keeps every token across a restart', async () => {
    server = await serve(dir);
    const tok = await call('/v1/tokenize', keys.billing, { items: [{ type: 'pan', value: '5555555555554444' }] });
    await server.stop('SIGKILL');
    server = await serve(dir);
    const res = await call('/v1/detokenize', keys.gateway, { tokens: [tok.body.items[0].token], purpose: 'charge' });
    expect(res.body.items[0].value).to.equal('5555555555554444');
  });

  it('init --force re-issues the starter keys and keeps keys, records and audit', async () => {
    server = await serve(dir);
    const tok = await call('/v1/tokenize', keys.billing, { items: [{ type: 'ssn', value: '123-45-6789' }] });
    await server.stop();
    const keyFile = readFileSync(join(dir, 'master.key'));
    const forced = cli(['init', '--data-dir', dir, '--force', '--json']);
    expect(forced.status, forced.stderr).to.equal(0);
    const newKeys: Keys = JSON.parse(forced.stdout).apiKeys;
    expect(readFileSync(join(dir, 'master.key')).equals(keyFile)).to.equal(true);
    server = await serve(dir);
    expect((await call('/v1/audit', keys.security)).status).to.equal(401);
    const res = await call('/v1/detokenize', newKeys.support, { tokens: [tok.body.items[0].token] });
    expect(res.body.items[0].value).to.equal('***-**-6789');
    expect((await call('/v1/audit/verify', newKeys.security)).body.ok).to.equal(true);
    keys = newKeys;
  });

  it('init --force on a running vault: the server drops the old keys and accepts the new ones without a signal', async () => {
    server = await serve(dir);
    expect((await call('/v1/audit/verify', keys.security)).status).to.equal(200);
    const keysFile = join(root, 'reissued-keys.json');
    const forced = cli(['init', '--data-dir', dir, '--force', '--keys-file', keysFile]);
    expect(forced.status, forced.stderr).to.equal(0);
    expect(forced.stdout).to.match(/A running vault loads the new keys within \d+ s/);
    expect(forced.stdout).not.to.contain('pvk_');
    const newKeys: Keys = JSON.parse(readFileSync(keysFile, 'utf8')).apiKeys;
    // No SIGHUP: the server notices the policy file changed. Poll for it (no deadline is asserted).
    await waitFor(async () => (await call('/v1/audit/verify', keys.security)).status === 401, {
      what: 'the server to load the reissued keys',
      everyMs: 100,
    });
    expect((await call('/v1/audit/verify', keys.security)).status, 'old key').to.equal(401);
    expect((await call('/v1/audit/verify', newKeys.security)).status, 'new key').to.equal(200);
    const reloads = (await call('/v1/audit?limit=1000', newKeys.security)).body.items.filter(
      (r: { action: string; requestId: string }) => r.action === 'policy:reload' && r.requestId === 'policy-file-changed',
    );
    expect(reloads.map((r: { outcome: string }) => r.outcome)).to.include('allow');
    keys = newKeys;
  });

  describe('start-up refuses files other users can change or read, naming the file and the mode to set', () => {
    let loose: string;
    beforeEach(() => {
      loose = join(root, `loose-${Math.random().toString(36).slice(2)}`);
      expect(cli(['init', '--data-dir', loose]).status).to.equal(0);
    });
    const refusal = () => {
      const res = cli(['serve', '--data-dir', loose, '--port', '0']);
      expect(res.status, res.stdout).to.equal(1);
      expect(res.stdout).not.to.contain('listening');
      return res.stderr;
    };

    it('a world-writable policy file', () => {
      chmodSync(join(loose, 'policy.json'), 0o666);
      expect(refusal())
        .to.contain(`policy file ${join(loose, 'policy.json')} has mode 666`)
        .and.to.match(/chmod go-w/);
    });

    it('a group-writable config.json', () => {
      chmodSync(join(loose, 'config.json'), 0o620);
      expect(refusal())
        .to.contain(`config file ${join(loose, 'config.json')} has mode 620`)
        .and.to.match(/chmod go-w/);
    });

    it('a world-readable TLS private key, and a CA file others can write', () => {
      const config = JSON.parse(readFileSync(join(loose, 'config.json'), 'utf8'));
      config.tls = { certFile: 'server.pem', keyFile: 'server.key', clientCaFile: 'ca.pem' };
      writeFileSync(join(loose, 'config.json'), JSON.stringify(config));
      for (const file of ['server.pem', 'server.key', 'ca.pem'])
        writeFileSync(join(loose, file), 'not read before the check', { mode: 0o644 });
      chmodSync(join(loose, 'server.key'), 0o644);
      expect(refusal())
        .to.contain(`TLS private key ${join(loose, 'server.key')} has mode 644`)
        .and.to.contain('chmod 600');
      chmodSync(join(loose, 'server.key'), 0o600);
      chmodSync(join(loose, 'ca.pem'), 0o666);
      expect(refusal()).to.contain(`TLS client CA file ${join(loose, 'ca.pem')} has mode 666`);
    });
  });

  it('init refuses a non-empty directory that is not a vault, and a shared (1777) one, changing nothing', () => {
    const occupied = join(root, 'occupied');
    mkdirSync(occupied, { mode: 0o755 });
    chmodSync(occupied, 0o755);
    writeFileSync(join(occupied, 'notes.txt'), 'someone else’s file');
    const res = cli(['init', '--data-dir', occupied]);
    expect(res.status).to.equal(1);
    expect(res.stderr)
      .to.contain(occupied)
      .and.to.match(/not empty and holds no vault/);
    expect(statSync(occupied).mode & 0o7777).to.equal(0o755);
    expect(readdirSync(occupied)).to.deep.equal(['notes.txt']);

    const shared = join(root, 'shared');
    mkdirSync(shared);
    chmodSync(shared, 0o1777);
    const again = cli(['init', '--data-dir', shared]);
    expect(again.status).to.equal(1);
    expect(again.stderr)
      .to.contain(shared)
      .and.to.match(/shared directory/);
    expect(statSync(shared).mode & 0o7777).to.equal(0o1777);
    expect(readdirSync(shared)).to.deep.equal([]);
  });

  it('start --keys-file writes the starter keys to a 0600 file and prints only where they are', async () => {
    const fresh = join(root, 'container');
    const keysFile = join(root, 'starter-api-keys.json');
    server = await serve(fresh, { command: 'start', args: ['--keys-file', keysFile] });
    expect(server.output()).not.to.contain('pvk_');
    expect(server.output()).to.contain(`API keys written to ${keysFile} (mode 0600)`);
    expect(statSync(keysFile).mode & 0o777).to.equal(0o600);
    const written = JSON.parse(readFileSync(keysFile, 'utf8'));
    expect(written.dataDir).to.equal(fresh);
    expect(Object.keys(written.apiKeys).sort()).to.deep.equal(['billing', 'gateway', 'security', 'support']);
    const tok = await call('/v1/tokenize', written.apiKeys.billing, { items: [{ type: 'pan', value: '4111111111111111' }] });
    expect(tok.status).to.equal(200);

    const json = cli(['init', '--data-dir', join(root, 'container-json'), '--json', '--keys-file', join(root, 'k2.json')]);
    expect(json.status, json.stderr).to.equal(0);
    expect(JSON.parse(json.stdout)).to.deep.equal({ keysFile: join(root, 'k2.json'), dataDir: join(root, 'container-json') });
    expect(cli(['serve', '--data-dir', fresh, '--keys-file', keysFile]).status, '--keys-file only with init/start').to.equal(2);
    const nowhere = cli(['init', '--data-dir', join(root, 'never-created'), '--keys-file', join(root, 'no-such-dir', 'k.json')]);
    expect(nowhere.status).to.equal(2);
    expect(nowhere.stderr).to.match(/--keys-file: cannot write into/);
    expect(existsSync(join(root, 'never-created')), 'no vault whose keys would be lost').to.equal(false);
  });

  it('policy report prints the policy file as Markdown, or JSON with --json; an invalid policy exits 1 naming it', () => {
    const vault = join(root, 'report-vault');
    expect(cli(['init', '--data-dir', vault, '--json']).status).to.equal(0);
    const markdown = cli(['policy', 'report', '--data-dir', vault]);
    expect(markdown.status, markdown.stderr).to.equal(0);
    expect(markdown.stdout).to.contain('| detokenize | pan | plain | one of: charge |');
    expect(markdown.stdout).to.contain('| pan | not limited | not limited |');
    const json = cli(['policy', 'report', '--data-dir', vault, '--json']);
    expect(json.status, json.stderr).to.equal(0);
    const report = JSON.parse(json.stdout);
    expect(report.principals.map((p: { principal: string }) => p.principal)).to.deep.equal(['billing', 'gateway', 'support', 'security']);
    expect(JSON.stringify(report)).not.to.contain('sha256');
    writeFileSync(
      join(vault, 'policy.json'),
      '{"version": 1, "roles": {}, "principals": {"x": {"roles": ["ghost"], "tenants": ["t"], "apiKeys": []}}}',
    );
    const invalid = cli(['policy', 'report', '--data-dir', vault]);
    expect(invalid.status).to.equal(1);
    expect(invalid.stderr).to.contain('unknown role "ghost"');
  });

  it('audit verify re-verifies every row: exits 0 on an intact chain and non-zero naming an edited row before the checkpoint', () => {
    const ok = cli(['audit', 'verify', '--data-dir', dir]);
    expect(ok.status, ok.stderr).to.equal(0);
    expect(ok.stdout).to.match(/intact/);
    const db = new Database(join(dir, 'vault.db'));
    // The verification left a checkpoint past row 2; the CLI re-verifies rows before it all the same.
    expect((db.prepare('SELECT seq FROM audit_checkpoint').get() as { seq: number }).seq).to.be.greaterThan(2);
    db.prepare("UPDATE audit SET principal = 'mallory' WHERE seq = 2").run();
    db.close();
    const bad = cli(['audit', 'verify', '--data-dir', dir, '--json']);
    expect(bad.status).to.equal(1);
    expect(JSON.parse(bad.stdout)).to.include({ ok: false, firstBadSeq: 2, verifiedFrom: 1, checkpoint: 'valid' });
  });

  it('audit archive exports verified rows with their head and prunes them; audit verify checks the rest and the archive file', () => {
    const fresh = join(root, 'archiving');
    expect(cli(['init', '--data-dir', fresh]).status).to.equal(0);
    const db = new Database(join(fresh, 'vault.db'));
    const rowsBefore = (db.prepare('SELECT count(*) AS n FROM audit').get() as { n: number }).n;
    db.close();
    const out = join(root, 'audit-1.jsonl');
    const archived = cli(['audit', 'archive', '--data-dir', fresh, '--before', String(rowsBefore + 1), '--out', out, '--json']);
    expect(archived.status, archived.stderr).to.equal(0);
    expect(JSON.parse(archived.stdout)).to.include({ fromSeq: 1, throughSeq: rowsBefore, rows: rowsBefore });
    expect(readFileSync(out, 'utf8').trimEnd().split('\n')).to.have.length(rowsBefore + 2);

    const verified = cli(['audit', 'verify', '--data-dir', fresh, '--json']);
    expect(verified.status, verified.stdout).to.equal(0);
    expect(JSON.parse(verified.stdout)).to.include({ ok: true, archivedThrough: rowsBefore });
    const file = cli(['audit', 'verify', '--data-dir', fresh, '--archive', out]);
    expect(file.status, file.stdout).to.equal(0);
    expect(file.stdout).to.match(/^archive intact: rows #1–#\d+/);

    writeFileSync(out, readFileSync(out, 'utf8').replace('"action":"vault:init"', '"action":"vault:nothing"'));
    const tampered = cli(['audit', 'verify', '--data-dir', fresh, '--archive', out]);
    expect(tampered.status).to.equal(1);
    expect(tampered.stdout).to.match(/^archive BROKEN at line 2/);
    expect(cli(['audit', 'archive', '--data-dir', fresh, '--before', 'x', '--out', out]).status).to.equal(2);
  });

  it('refuses to start with a wrong master key, and explains', async () => {
    const other = join(root, 'other');
    expect(cli(['init', '--data-dir', other]).status).to.equal(0);
    writeFileSync(join(other, 'master.key'), readFileSync(join(dir, 'master.key')), { mode: 0o600 });
    const res = cli(['serve', '--data-dir', other, '--port', '0']);
    expect(res.status).to.equal(1);
    expect(res.stderr).to.match(/master key does not open this database/);
  });

  it('refuses a master key file others can read', () => {
    const loose = join(root, 'loose');
    expect(cli(['init', '--data-dir', loose]).status).to.equal(0);
    chmodSync(join(loose, 'master.key'), 0o644);
    const res = cli(['serve', '--data-dir', loose, '--port', '0']);
    expect(res.status).to.equal(1);
    expect(res.stderr).to.match(/chmod 600/);
  });

  it('start initialises on first run and then just serves', async () => {
    const fresh = join(root, 'fresh');
    server = await serve(fresh, { command: 'start' });
    expect(server.output()).to.match(/billing\s+pvk_/);
    expect(existsSync(join(fresh, 'vault.db'))).to.equal(true);
    await server.stop();
    server = await serve(fresh, { command: 'start' });
    expect(server.output()).not.to.match(/pvk_/);
  });

  it('prints usage and exits 2 on a bad command line', () => {
    expect(cli(['frobnicate', '--data-dir', dir]).status).to.equal(2);
    expect(cli(['serve']).stderr).to.match(/--data-dir is required/);
    expect(cli(['serve', '--data-dir', dir, '--port', 'abc']).status).to.equal(2);
  });
});
