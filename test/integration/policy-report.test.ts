import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { policyReport } from '../../src/service/policy-report';
import type { VaultConfig } from '../../src/config';
import { createTestVault, openEmbeddedVault, TestVault } from '../helpers/test-vault';

describe('GET /v1/policy/report', () => {
  let v: TestVault;
  beforeEach(async () => {
    v = await createTestVault();
  });
  afterEach(() => v.close());

  const report = (who: 'billing' | 'gateway' | 'support' | 'security', query = '') =>
    v.http.get(`/v1/policy/report${query}`).set(v.as(who));
  const lastAuditRow = async () => {
    const rows = (await v.opened.store.auditRows(0, 1000)).filter((r) => r.action === 'policy:read');
    return rows[rows.length - 1];
  };
  const editPolicy = (edit: (policy: { roles: Record<string, unknown[]>; principals: Record<string, { roles: string[] }> }) => void) => {
    const file = join(v.dir, 'policy.json');
    const policy = JSON.parse(readFileSync(file, 'utf8'));
    edit(policy);
    writeFileSync(file, JSON.stringify(policy));
    v.opened.reloadPolicy();
  };

  it('refuses callers without policy:read with 403, audited', async () => {
    for (const who of ['billing', 'gateway', 'support'] as const) {
      const res = await report(who);
      expect(res.status, who).to.equal(403);
      expect(res.body.error.code).to.equal('forbidden');
      expect(await lastAuditRow()).to.deep.include({ principal: who, outcome: 'deny', reason: 'no policy:read grant' });
    }
  });

  it('gives security the report of the policy in force as JSON, audited', async () => {
    const res = await report('security');
    expect(res.status).to.equal(200);
    expect(res.headers['content-type']).to.equal('application/json; charset=utf-8');
    const want = policyReport(v.opened.vault.deps.policy(), {}, new Date(res.body.generatedAt));
    expect(res.body).to.deep.equal(JSON.parse(JSON.stringify(want)));
    expect(res.body.principals.map((p: { principal: string }) => p.principal)).to.deep.equal(['billing', 'gateway', 'support', 'security']);
    expect(await lastAuditRow()).to.deep.include({ principal: 'security', outcome: 'allow', reason: null });
    // Names, actions and levels only: no API-key hash (nor any other long hex) is in it.
    expect(JSON.stringify(res.body)).not.to.match(/[0-9a-f]{32}/);
  });

  it('states the retention of the config’s retention block, "not limited" for types it does not name', async () => {
    const config = { ...v.config, retention: { dob: { defaultTtlSeconds: 3600, maxTtlSeconds: 86_400 } } } as VaultConfig;
    const opened = await openEmbeddedVault(config);
    try {
      const report = await opened.vault.policyReport({
        principal: { id: 'security', roles: ['security'], tenants: ['*'] },
        requestId: 'test',
      });
      expect(report.retention.find((r) => r.type === 'dob')).to.deep.equal({ type: 'dob', defaultTtlSeconds: 3600, maxTtlSeconds: 86_400 });
      expect(report.retention.find((r) => r.type === 'pan')).to.deep.equal({ type: 'pan', defaultTtlSeconds: null, maxTtlSeconds: null });
    } finally {
      await opened.close();
    }
  });

  it('answers Markdown with ?format=markdown, and 400 for another format', async () => {
    const res = await report('security', '?format=markdown');
    expect(res.status).to.equal(200);
    expect(res.headers['content-type']).to.equal('text/markdown; charset=utf-8');
    expect(res.text).to.contain('### Role gateway');
    expect(res.text).to.contain('| detokenize | pan | plain | one of: charge |');
    const bad = await report('security', '?format=html');
    expect(bad.status).to.equal(400);
    expect(bad.body.error.code).to.equal('invalid_request');
  });

  it('follows a policy reload', async () => {
    editPolicy((policy) => {
      policy.roles.analytics = [{ actions: ['detokenize'], types: ['dob', 'email'], reveal: 'generalized', purposes: ['statistics'] }];
      policy.principals.support.roles.push('analytics');
    });
    const res = await report('security');
    const analytics = res.body.roles.find((r: { role: string }) => r.role === 'analytics');
    expect(analytics.permissions).to.deep.equal([
      { action: 'detokenize', type: 'email', reveal: 'generalized', purposes: ['statistics'] },
      { action: 'detokenize', type: 'dob', reveal: 'generalized', purposes: ['statistics'] },
    ]);
    const support = res.body.principals.find((p: { principal: string }) => p.principal === 'support');
    expect(support.roles).to.deep.equal(['support', 'analytics']);
  });

  it('a grant bound to purposes gives nothing to operations that state none (audit:read, policy:read), and the report says so', async () => {
    editPolicy((policy) => {
      policy.roles.support.push({ actions: ['audit:read', 'policy:read', 'subject:export'], purposes: ['incident'] });
    });
    expect((await v.http.get('/v1/audit').set(v.as('support'))).status).to.equal(403);
    expect((await v.http.get('/v1/audit/verify').set(v.as('support'))).status).to.equal(403);
    expect((await report('support')).status).to.equal(403);
    expect((await v.http.post('/v1/subjects/export').set(v.as('support')).send({ subject: 'cust-1' })).status).to.equal(403);
    const support = (await report('security')).body.roles.find((r: { role: string }) => r.role === 'support');
    const stated = support.permissions.filter((p: { action: string }) => !['detokenize', 'read-metadata'].includes(p.action));
    expect(stated, 'the report lists no permission that no request can get').to.deep.equal([]);
  });

  it('shows a caller scoped to some tenants only the principals confined to them', async () => {
    editPolicy((policy) => {
      policy.roles.support.push({ actions: ['policy:read'] });
    });
    const res = await report('support');
    expect(res.status).to.equal(200);
    expect(res.body.principals.map((p: { principal: string }) => p.principal)).to.deep.equal(['billing', 'gateway', 'support']);
    expect(res.body.roles.map((r: { role: string }) => r.role)).to.deep.equal(['billing', 'gateway', 'support', 'security']);
  });

  it('is in the OpenAPI document with both media types', async () => {
    const doc = (await v.http.get('/openapi.json')).body;
    const operation = doc.paths['/v1/policy/report'].get;
    expect(operation.description).to.contain('policy:read');
    expect(Object.keys(operation.responses[200].content)).to.deep.equal(['application/json', 'text/markdown']);
    expect(operation.parameters.map((p: { name: string }) => p.name)).to.deep.equal(['format']);
  });
});
