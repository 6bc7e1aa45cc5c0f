import type http from 'node:http';
import { chunks, MAX_BATCH } from './batch';
import { VaultApiError, VaultBatchError, VaultConnectionError } from './errors';
import { OperationId, OPERATIONS } from './operations';
import { requestIdOrNew } from './request-id';
import { backoffDelay, DEFAULT_RETRY, isRetryable, retryAfterMs, RetryOptions, sleep } from './retry';
import { createAgent, exchange, HttpAnswer, TimeoutError, TlsOptions } from './transport';
import type {
  AccessLogRequest,
  AuditPage,
  ConsentRequest,
  ConsentResult,
  EraseResult,
  SubjectAccessLog,
  SubjectExport,
  SubjectRequest,
  AuditVerifyResult,
  DetokenizeRequest,
  DetokenizeResult,
  DetokenizeWireResponse,
  Job,
  KeyScope,
  KeyView,
  PolicyReport,
  RewrapResult,
  RewrapTarget,
  RotateResult,
  TokenizeItem,
  TokenizedItem,
  TokenizeRequest,
  TokenMetadata,
} from './types';

export interface VaultClientOptions {
  /** e.g. `https://vault.internal:8443` */
  baseUrl: string;
  /** A principal's API key; may be left out when a pinned client certificate identifies the caller. */
  apiKey?: string;
  /** Server CA and client certificate (mTLS) for an https:// baseUrl. */
  tls?: TlsOptions;
  /** Per attempt; an attempt without a complete answer by then fails with code `timeout` (default 30000). */
  timeoutMs?: number;
  retry?: RetryOptions;
  /** Your own agent (proxying, socket limits); `tls` is then ignored. */
  agent?: http.Agent;
}

/** Per call. */
export interface CallOptions {
  /** Aborts the call, retries and waits included; it rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Sent as `X-Request-Id` (a UUID or 1–64 of `A-Z a-z 0-9 - _`); a new UUID when left out. Retries reuse it. */
  requestId?: string;
  timeoutMs?: number;
}

interface Call extends CallOptions {
  params?: Record<string, string | number>;
  query?: Record<string, string | number | boolean | undefined>;
  body?: object;
  /** Overrides the operation's own idempotence (deterministic tokenize). */
  idempotent?: boolean;
}

/**
 * A typed client for the vault's API v1. Safe to retry (and retried on 429/503 by default): every
 * read, `detokenize`, `deleteToken` (a retry after a commit answers `not_found`), `rewrapKeys`,
 * `retireKey`, `destroyKey` (a retry after a commit answers `key_state_conflict`), and `tokenize`
 * when every item is `deterministic`. Not idempotent — retried only on an answer proving nothing
 * was done (see retry.ts): `tokenize` otherwise (a repeat makes new tokens), `rotateKeys`,
 * `startReencrypt`.
 */
export class VaultClient {
  private readonly baseUrl: URL;
  private readonly agent: http.Agent;
  private readonly ownsAgent: boolean;
  private readonly retry: Required<RetryOptions>;
  private readonly timeoutMs: number;

  constructor(private readonly options: VaultClientOptions) {
    this.baseUrl = new URL(options.baseUrl);
    this.ownsAgent = options.agent === undefined;
    this.agent = options.agent ?? createAgent(this.baseUrl, options.tls);
    this.retry = { ...DEFAULT_RETRY, ...options.retry };
    if (!Number.isInteger(this.retry.maxAttempts) || this.retry.maxAttempts < 1)
      throw new RangeError('retry.maxAttempts must be 1 or more');
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /** Tokenizes up to 1,000 values atomically; tokens come back in request order. */
  async tokenize(request: TokenizeRequest, options: CallOptions = {}): Promise<TokenizedItem[]> {
    const deterministic = request.items.length > 0 && request.items.every((item) => item.deterministic === true);
    const result = await this.call<{ items: TokenizedItem[] }>('tokenize', { ...options, body: request, idempotent: deterministic });
    return result.items;
  }

  /**
   * Any number of values, in requests of at most `batchSize` (1,000); results in input order. Each
   * request is atomic, the whole is not: on a failure a VaultBatchError holds the tokens made so far.
   */
  async tokenizeAll(
    items: readonly TokenizeItem[],
    { tenant, batchSize = MAX_BATCH, ...options }: CallOptions & { tenant?: string; batchSize?: number } = {},
  ): Promise<TokenizedItem[]> {
    return this.inBatches(items, batchSize, (chunk) => this.tokenize({ tenant, items: chunk }, options));
  }

  /** One result per token, in order: `{ok: true, value, …}` or `{ok: false, error: {code}}`. */
  async detokenize(request: DetokenizeRequest, options: CallOptions = {}): Promise<DetokenizeResult[]> {
    const result = await this.call<DetokenizeWireResponse>('detokenize', { ...options, body: request });
    return result.items.map((item) => ('error' in item ? { ok: false, ...item } : { ok: true, ...item }));
  }

  /** Any number of tokens, in requests of at most `batchSize` (1,000); results in input order. */
  async detokenizeAll(
    tokens: readonly string[],
    {
      batchSize = MAX_BATCH,
      signal,
      requestId,
      timeoutMs,
      ...request
    }: CallOptions & Omit<DetokenizeRequest, 'tokens'> & { batchSize?: number } = {},
  ): Promise<DetokenizeResult[]> {
    return this.inBatches(tokens, batchSize, (chunk) => this.detokenize({ ...request, tokens: chunk }, { signal, requestId, timeoutMs }));
  }

  /** A token's metadata (never its value). */
  getTokenMetadata(token: string, { tenant, ...options }: CallOptions & { tenant?: string } = {}): Promise<TokenMetadata> {
    return this.call('getTokenMetadata', { ...options, params: { token }, query: { tenant } });
  }

  /** Deletes a token and its ciphertext. */
  async deleteToken(token: string, { tenant, ...options }: CallOptions & { tenant?: string } = {}): Promise<void> {
    await this.call('deleteToken', { ...options, params: { token }, query: { tenant } });
  }

  /** One page of audit rows after `after` (default 0); pass `next` back as `after` for the next page. */
  listAudit({ after, limit, ...options }: CallOptions & { after?: number; limit?: number } = {}): Promise<AuditPage> {
    return this.call('listAudit', { ...options, query: { after, limit } });
  }

  /** Every audit row after `after`, page by page. */
  async *auditRows({ after = 0, limit = 1000, ...options }: CallOptions & { after?: number; limit?: number } = {}) {
    let cursor: number | null = after;
    while (cursor !== null) {
      const page = await this.listAudit({ ...options, requestId: undefined, after: cursor, limit });
      yield* page.items;
      cursor = page.next;
    }
  }

  verifyAudit(options: CallOptions = {}): Promise<AuditVerifyResult> {
    return this.call('verifyAudit', options);
  }

  /** Who may do what under the vault's policy in force (needs `policy:read`); JSON, the Markdown form is served with `?format=markdown`. */
  policyReport(options: CallOptions = {}): Promise<PolicyReport> {
    return this.call('policyReport', options);
  }

  async listKeys({ tenant, all, ...options }: CallOptions & KeyScope = {}): Promise<KeyView[]> {
    const result = await this.call<{ keys: KeyView[] }>('listKeys', { ...options, query: { tenant, all } });
    return result.keys;
  }

  /** A new active data-key version (not idempotent: each call makes one). */
  rotateKeys({ tenant, all, ...options }: CallOptions & KeyScope = {}): Promise<RotateResult> {
    return this.call('rotateKeys', { ...options, body: { tenant, all } });
  }

  /** Re-wraps every data key under the current KEK, or switches to `target` first. */
  rewrapKeys({ target, ...options }: CallOptions & { target?: RewrapTarget } = {}): Promise<RewrapResult> {
    return this.call('rewrapKeys', { ...options, body: { target } });
  }

  /** Starts the background job moving records to the active data key; follow it with getJob or waitForJob. */
  async startReencrypt({ tenant, all, ...options }: CallOptions & KeyScope = {}): Promise<Job> {
    const result = await this.call<{ job: Job }>('reencryptRecords', { ...options, body: { tenant, all } });
    return result.job;
  }

  getJob(id: string, options: CallOptions = {}): Promise<Job> {
    return this.call('getJob', { ...options, params: { id } });
  }

  /** Polls a job until it is no longer running. */
  async waitForJob(id: string, { pollMs = 500, ...options }: CallOptions & { pollMs?: number } = {}): Promise<Job> {
    for (;;) {
      const job = await this.getJob(id, { ...options, requestId: undefined });
      if (job.state !== 'running') return job;
      await sleep(pollMs, options.signal);
    }
  }

  async retireKey(version: number, { tenant, ...options }: CallOptions & { tenant?: string } = {}): Promise<KeyView> {
    const result = await this.call<{ key: KeyView }>('retireKey', { ...options, params: { version }, body: { tenant } });
    return result.key;
  }

  /** Crypto-shreds a retired version; `confirm` must be exactly `destroy <tenant>/data/v<version>`. */
  async destroyKey(version: number, { tenant, confirm, ...options }: CallOptions & { tenant?: string; confirm: string }): Promise<KeyView> {
    const result = await this.call<{ key: KeyView }>('destroyKey', { ...options, params: { version }, body: { tenant, confirm } });
    return result.key;
  }

  /** Every record of a data subject with its value at your reveal level, and its consent (the subject goes in the body). */
  exportSubject({ tenant, subject, ...options }: CallOptions & SubjectRequest): Promise<SubjectExport> {
    return this.call('exportSubject', { ...options, body: { tenant, subject } });
  }

  /** Every audited decision that touched a data subject, optionally within [from, to). */
  subjectAccessLog({ tenant, subject, from, to, ...options }: CallOptions & AccessLogRequest): Promise<SubjectAccessLog> {
    return this.call('subjectAccessLog', { ...options, body: { tenant, subject, from, to } });
  }

  /** Erases a data subject: every record, and the link from its audit handle to it (irreversible). */
  eraseSubject({ tenant, subject, ...options }: CallOptions & SubjectRequest): Promise<EraseResult> {
    return this.call('eraseSubject', { ...options, body: { tenant, subject } });
  }

  /** Grants and withdraws purposes in a data subject's consent. */
  changeSubjectConsent({ tenant, subject, grant, withdraw, ...options }: CallOptions & ConsentRequest): Promise<ConsentResult> {
    return this.call('changeSubjectConsent', { ...options, body: { tenant, subject, grant, withdraw } });
  }

  /** Closes the client's idle keep-alive connections (not those of an agent you passed in). */
  close(): void {
    if (this.ownsAgent) this.agent.destroy();
  }

  private async inBatches<In, Out>(items: readonly In[], size: number, send: (chunk: In[]) => Promise<Out[]>): Promise<Out[]> {
    const results: Out[] = [];
    for (const chunk of chunks(items, size)) {
      try {
        results.push(...(await send(chunk)));
      } catch (err) {
        throw new VaultBatchError(results, err as Error);
      }
    }
    return results;
  }

  private async call<T>(operationId: OperationId, call: Call): Promise<T> {
    const operation = OPERATIONS[operationId];
    const requestId = requestIdOrNew(call.requestId);
    const url = this.urlFor(operation.path, call.params ?? {}, call.query ?? {});
    const body = 'body' in operation && call.body !== undefined ? JSON.stringify(call.body) : undefined;
    const headers: Record<string, string> = { Accept: 'application/json', 'X-Request-Id': requestId };
    if (this.options.apiKey !== undefined) headers.Authorization = `Bearer ${this.options.apiKey}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const idempotent = call.idempotent ?? operation.idempotent;
    for (let attempt = 1; ; attempt++) {
      let answer: HttpAnswer;
      try {
        answer = await exchange(this.agent, {
          method: operation.method,
          url,
          headers,
          body,
          timeoutMs: call.timeoutMs ?? this.timeoutMs,
          signal: call.signal,
        });
      } catch (err) {
        if (call.signal?.aborted) throw call.signal.reason;
        if (err instanceof TimeoutError) throw new VaultConnectionError('timeout', `${operationId}: ${err.message}`, requestId);
        throw new VaultConnectionError('connection_failed', `${operationId}: ${(err as Error).message}`, requestId, { cause: err });
      }
      if (answer.status >= 200 && answer.status < 300) return (answer.text ? JSON.parse(answer.text) : undefined) as T;
      const error = apiError(answer, attempt);
      const delay =
        isRetryable(answer.status, error.code, idempotent) && attempt < this.retry.maxAttempts
          ? backoffDelay(attempt, this.retry, error.retryAfterMs)
          : undefined;
      if (delay === undefined) throw error;
      await sleep(delay, call.signal);
    }
  }

  private urlFor(path: string, params: Record<string, string | number>, query: Record<string, string | number | boolean | undefined>): URL {
    const filled = path.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(String(params[name])));
    const url = new URL(this.baseUrl.pathname.replace(/\/+$/, '') + filled, this.baseUrl);
    for (const [name, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(name, String(value));
    return url;
  }
}

/** The vault's error body as a VaultApiError; an answer without one (a proxy's) gets code `http_<status>`. */
function apiError(answer: HttpAnswer, attempts: number): VaultApiError {
  let error: { code?: unknown; message?: unknown; requestId?: unknown; details?: unknown } | undefined;
  try {
    error = JSON.parse(answer.text).error;
  } catch {
    error = undefined;
  }
  const code = typeof error?.code === 'string' ? error.code : `http_${answer.status}`;
  const message = typeof error?.message === 'string' ? error.message : `the vault answered ${answer.status}`;
  const header = answer.headers['x-request-id'];
  const requestId = typeof error?.requestId === 'string' ? error.requestId : Array.isArray(header) ? header[0] : header;
  const details = error?.details && typeof error.details === 'object' ? (error.details as Record<string, unknown>) : undefined;
  return new VaultApiError(code, message, answer.status, requestId, details, retryAfterMs(answer.headers['retry-after']), attempts);
}
