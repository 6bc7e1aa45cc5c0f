import { randomInt } from 'node:crypto';
import { luhnCheckDigit } from '../../src/domain/data-types';

/** A random number of `length` digits starting with 4 that passes Luhn (a syntactically valid test PAN). */
export function randomPan(length = 16): string {
  const body = '4' + Array.from({ length: length - 2 }, () => String(randomInt(10))).join('');
  return body + luhnCheckDigit(body);
}

export interface JsonResponse {
  status: number;
  body: any;
}

export function apiClient(baseUrl: string) {
  return async (key: string, method: string, path: string, body?: object): Promise<JsonResponse> => {
    const res = await fetch(baseUrl + path, {
      method,
      headers: { Authorization: `Bearer ${key}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
}

/**
 * Clients that tokenize and detokenize continuously until stopped, checking every answer.
 * Remembers every token it was given with its value, and every failure it saw.
 */
export class LiveTraffic {
  readonly issued = new Map<string, string>();
  readonly failures: string[] = [];
  requests = 0;
  private running = true;
  private readonly workers: Promise<void>[] = [];

  constructor(
    private readonly call: ReturnType<typeof apiClient>,
    private readonly keys: { billing: string; gateway: string },
    concurrency = 4,
  ) {
    for (let i = 0; i < concurrency; i++) this.workers.push(this.work());
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.workers);
  }

  private async work(): Promise<void> {
    while (this.running) {
      const values = Array.from({ length: 5 }, randomPan);
      const tok = await this.call(this.keys.billing, 'POST', '/v1/tokenize', {
        items: values.map((value) => ({ type: 'pan', value })),
      }).catch((err) => ({ status: 0, body: String(err) }));
      this.requests++;
      if (tok.status !== 200) {
        this.failures.push(`tokenize ${tok.status} ${JSON.stringify(tok.body)}`);
        continue;
      }
      tok.body.items.forEach((item: { token: string }, i: number) => this.issued.set(item.token, values[i]));
      const known = [...this.issued.keys()];
      const sample = Array.from({ length: 5 }, () => known[Math.floor(Math.random() * known.length)]);
      const det = await this.call(this.keys.gateway, 'POST', '/v1/detokenize', { tokens: sample, purpose: 'charge' }).catch((err) => ({
        status: 0,
        body: String(err),
      }));
      this.requests++;
      if (det.status !== 200) {
        this.failures.push(`detokenize ${det.status} ${JSON.stringify(det.body)}`);
        continue;
      }
      det.body.items.forEach((item: { token: string; value?: string; error?: unknown }) => {
        if (item.value !== this.issued.get(item.token)) this.failures.push(`detokenize item ${JSON.stringify(item)}`);
      });
    }
  }
}
