import { expect } from 'chai';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { join } from 'node:path';
import { VaultApiError, VaultClient, VaultConnectionError } from '../../src/client';
import { makePki } from '../helpers/pki';
import { cli, serve, ServerProcess } from '../helpers/processes';
import { tempDir } from '../helpers/test-vault';

describe('end to end: HTTPS and mTLS', function () {
  this.timeout(60_000);
  let root: string;
  let dir: string;
  let keys: Record<string, string>;
  let server: ServerProcess;

  before(async () => {
    root = tempDir('pii-vault-tls-');
    dir = join(root, 'vault');
    keys = JSON.parse(cli(['init', '--data-dir', dir, '--json']).stdout).apiKeys;
    const { fingerprint } = makePki(dir);
    const configFile = join(dir, 'config.json');
    const config = JSON.parse(readFileSync(configFile, 'utf8'));
    config.tls = { certFile: 'server.pem', keyFile: 'server.key', clientCaFile: 'ca.pem', requireClientCert: true };
    config.logLevel = 'warn';
    writeFileSync(configFile, JSON.stringify(config));
    const policyFile = join(dir, 'policy.json');
    const policy = JSON.parse(readFileSync(policyFile, 'utf8'));
    policy.principals.gateway.clientCertificates = [{ sha256: fingerprint('gateway') }];
    writeFileSync(policyFile, JSON.stringify(policy));
    server = await serve(dir);
  });
  after(async () => {
    await server.stop('SIGKILL');
    rmSync(root, { recursive: true, force: true });
  });

  const request = (path: string, options: { cert?: string; apiKey?: string; body?: object }) =>
    new Promise<{ status: number; body: any }>((resolve, reject) => {
      const url = new URL(path, server.url);
      const req = https.request(
        url,
        {
          method: options.body ? 'POST' : 'GET',
          ca: readFileSync(join(dir, 'ca.pem')),
          ...(options.cert
            ? { cert: readFileSync(join(dir, `${options.cert}.pem`)), key: readFileSync(join(dir, `${options.cert}.key`)) }
            : {}),
          headers: {
            ...(options.apiKey ? { Authorization: `Bearer ${options.apiKey}` } : {}),
            ...(options.body ? { 'Content-Type': 'application/json' } : {}),
          },
        },
        (res) => {
          let text = '';
          res.on('data', (c) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode!, body: text ? JSON.parse(text) : undefined }));
        },
      );
      req.on('error', reject);
      req.end(options.body ? JSON.stringify(options.body) : undefined);
    });

  it('serves HTTPS and says so in its listening line', () => {
    expect(server.url).to.match(/^https:\/\/127\.0\.0\.1:\d+$/);
  });

  it('identifies a principal by its pinned client certificate, without an API key', async () => {
    const tok = await request('/v1/tokenize', {
      cert: 'stranger',
      apiKey: keys.billing,
      body: { items: [{ type: 'pan', value: '4111111111111111' }] },
    });
    expect(tok.status).to.equal(200);
    const det = await request('/v1/detokenize', { cert: 'gateway', body: { tokens: [tok.body.items[0].token], purpose: 'charge' } });
    expect(det.status).to.equal(200);
    expect(det.body.items[0].value).to.equal('4111111111111111');
  });

  it('a CA-signed certificate that is not pinned identifies nobody', async () => {
    const res = await request('/v1/audit', { cert: 'stranger' });
    expect(res.status).to.equal(401);
  });

  it('the typed client speaks mTLS: a pinned certificate identifies the caller without an API key', async () => {
    const tls = { ca: readFileSync(join(dir, 'ca.pem')) };
    const billing = new VaultClient({
      baseUrl: server.url,
      apiKey: keys.billing,
      tls: { ...tls, cert: readFileSync(join(dir, 'stranger.pem')), key: readFileSync(join(dir, 'stranger.key')) },
    });
    const gateway = new VaultClient({
      baseUrl: server.url,
      tls: { ...tls, cert: readFileSync(join(dir, 'gateway.pem')), key: readFileSync(join(dir, 'gateway.key')) },
    });
    const noCertificate = new VaultClient({ baseUrl: server.url, apiKey: keys.security, tls, retry: { maxAttempts: 1 } });
    try {
      const [{ token }] = await billing.tokenize({ items: [{ type: 'pan', value: '4111111111111111' }] });
      const [item] = await gateway.detokenize({ tokens: [token], purpose: 'charge' });
      expect(item).to.deep.equal({ ok: true, token, type: 'pan', value: '4111111111111111', reveal: 'plain' });
      const refused = await gateway.listAudit().catch((e) => e);
      expect(refused).to.be.instanceOf(VaultApiError);
      expect(refused.code).to.equal('forbidden');
      const handshake = await noCertificate.verifyAudit().catch((e) => e);
      expect(handshake).to.be.instanceOf(VaultConnectionError);
      expect(handshake.code).to.equal('connection_failed');
    } finally {
      for (const client of [billing, gateway, noCertificate]) client.close();
    }
  });

  it('refuses a client without a certificate at the TLS handshake', async () => {
    const err = await request('/healthz', {}).catch((e) => e);
    expect(err).to.be.instanceOf(Error);
    expect(String(err.code ?? err.message)).to.match(/ECONNRESET|CERTIFICATE|alert|socket hang up/i);
  });
});
