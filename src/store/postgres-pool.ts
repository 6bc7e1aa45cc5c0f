import { Pool, type PoolConfig } from 'pg';

export interface PoolSettings {
  url: string;
  /** Connections at most (the pool waits for a free one, up to connectTimeoutMs). */
  poolSize: number;
  connectTimeoutMs: number;
  statementTimeoutMs: number;
}

/**
 * A bounded pool on one of the vault's PostgreSQL databases, named `applicationName` on the server.
 * Every session commits durably (an acknowledged write is on disk, whatever the server's default)
 * and runs without JIT: the vault's statements are short lookups, and when stale statistics (after
 * a bulk load) inflate a plan's cost estimate, compiling it took 200+ ms per statement, ten times
 * the lookup itself.
 */
export function durablePool(settings: PoolSettings, applicationName: string, more: PoolConfig = {}): Pool {
  const pool = new Pool({
    connectionString: settings.url,
    max: settings.poolSize,
    connectionTimeoutMillis: settings.connectTimeoutMs,
    idleTimeoutMillis: 30_000,
    statement_timeout: settings.statementTimeoutMs,
    // A connection that goes silent (no RST) fails on the client side too, a little after the server would have.
    query_timeout: settings.statementTimeoutMs + settings.connectTimeoutMs,
    keepAlive: true,
    application_name: applicationName,
    options: '-c synchronous_commit=on -c jit=off',
    ...more,
  });
  // A session the server ends in the packet that made it ready (a shutting-down server) errs before
  // whoever awaited connect() can listen: without a listener of its own that 'error' would crash the
  // process. The failure still reaches the holder (its statements fail) and the pool (it drops the client).
  pool.on('connect', (client) => client.on('error', () => undefined));
  return pool;
}
