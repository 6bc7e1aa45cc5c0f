import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Prometheus metrics. Labels are route patterns, status codes, principal ids and error codes:
 * never a token, a value or anything else taken from a request body or path.
 */
export class VaultMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'pii_vault_http_requests_total',
    help: 'HTTP requests by route pattern, method and status.',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [this.registry],
  });
  readonly duration = new Histogram({
    name: 'pii_vault_http_request_duration_seconds',
    help: 'HTTP request latency by route pattern.',
    labelNames: ['route', 'method'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly authFailures = new Counter({
    name: 'pii_vault_auth_failures_total',
    help: 'Requests refused for a missing or unknown API key.',
    registers: [this.registry],
  });
  readonly throttled = new Counter({
    name: 'pii_vault_throttled_total',
    help: 'Requests refused by a rate limit, by reason.',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  constructor(keyProviderCalls: () => number) {
    collectDefaultMetrics({ register: this.registry, prefix: 'pii_vault_' });
    new Counter({
      name: 'pii_vault_key_provider_calls_total',
      help: 'Calls to the KEK (local master key or KMS): generate, unwrap, wrap. Cached keys make none.',
      registers: [this.registry],
      collect() {
        this.reset();
        this.inc(keyProviderCalls());
      },
    });
  }
}
