import http, { Server } from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { dataPath } from '../config';
import { requireNotWritableByOthers, requirePrivateFile } from '../file-modes';
import { VaultMetrics } from '../http/metrics';
import { AddressInfo } from 'node:net';
import { VaultConfig } from '../config';
import { createApp } from '../http/app';
import { createLogger, Logger } from '../logger';
import { OpenedVault, openVault } from './open-vault';

interface RunningServer {
  url: string;
  server: Server;
  opened: OpenedVault;
  logger: Logger;
  close(): Promise<void>;
}

/** Server certificate, and for mTLS the client CA: clients must then present a certificate it signed. */
function tlsOptions(config: VaultConfig): https.ServerOptions {
  const tls = config.tls!;
  const read = (file: string) => readFileSync(dataPath(config, file));
  requirePrivateFile(dataPath(config, tls.keyFile), 'TLS private key');
  requireNotWritableByOthers(dataPath(config, tls.certFile), 'TLS certificate');
  if (tls.clientCaFile) requireNotWritableByOthers(dataPath(config, tls.clientCaFile), 'TLS client CA file');
  return {
    cert: read(tls.certFile),
    key: read(tls.keyFile),
    ...(tls.clientCaFile ? { ca: read(tls.clientCaFile), requestCert: true, rejectUnauthorized: tls.requireClientCert } : {}),
    minVersion: 'TLSv1.2',
  };
}

export const VERSION: string = require('../../../package.json').version;

/** Opens the vault and listens; resolves once the port is bound. */
export async function startServer(config: VaultConfig, logger: Logger = createLogger(config.logLevel)): Promise<RunningServer> {
  // Read (and permission-checked) before anything is opened: a bad key file refuses to start cleanly.
  const tls = config.tls ? tlsOptions(config) : undefined;
  const opened = await openVault(config, { resumeJobs: true, logger });
  const metrics = config.metrics ? new VaultMetrics(() => opened.keys.providerCalls) : undefined;
  const app = createApp({
    vault: opened.vault,
    logger,
    version: VERSION,
    metrics,
    limits: {
      rateLimits: config.rateLimits,
      authFailuresPerMinute: config.authFailuresPerMinute,
      maxConcurrentRequests: config.maxConcurrentRequests,
      maxConcurrentRequestsPerPrincipal: config.maxConcurrentRequestsPerPrincipal,
      trustProxy: config.trustProxy,
    },
  });
  const timeouts = {
    headersTimeout: config.headersTimeoutMs,
    requestTimeout: Math.max(config.requestTimeoutMs, config.headersTimeoutMs),
    keepAliveTimeout: config.keepAliveTimeoutMs,
    // How often Node checks the timeouts above; its 30 s default would let slow clients linger.
    connectionsCheckingInterval: Math.min(1_000, config.headersTimeoutMs),
  };
  const server = tls ? https.createServer({ ...tls, ...timeouts }, app) : http.createServer(timeouts, app);
  server.keepAliveTimeout = config.keepAliveTimeoutMs;
  server.listen(config.port, config.host);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  }).catch(async (err) => {
    await opened.close();
    throw err;
  });
  const { port } = server.address() as AddressInfo;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  let closing: Promise<void> | undefined;
  // Once shutting down, every response tells its client to close the connection, so keep-alive
  // connections end with their last in-flight request instead of waiting out the timeout.
  server.prependListener('request', (_req: http.IncomingMessage, res: http.ServerResponse) => {
    if (closing) res.setHeader('Connection', 'close');
  });
  return {
    url: `${config.tls ? 'https' : 'http'}://${host}:${port}`,
    server,
    opened,
    logger,
    close: () =>
      (closing ??= (async () => {
        // Stop accepting, let in-flight requests finish (up to the timeout), then close the store.
        const drained = new Promise<void>((resolve) => server.close(() => resolve()));
        const idle = setInterval(() => server.closeIdleConnections(), 50);
        server.closeIdleConnections();
        const timer = setTimeout(() => {
          logger.warn({ shutdownTimeoutMs: config.shutdownTimeoutMs }, 'shutdown timeout reached: closing the connections still open');
          server.closeAllConnections();
        }, config.shutdownTimeoutMs);
        await drained;
        clearInterval(idle);
        clearTimeout(timer);
        await opened.close();
      })()),
  };
}
