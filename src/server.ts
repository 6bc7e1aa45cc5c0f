import { Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { VaultConfig } from './config';
import { createApp } from './http/app';
import { createLogger, Logger } from './logger';
import { OpenedVault, openVault } from './open-vault';

export interface RunningServer {
  url: string;
  server: Server;
  opened: OpenedVault;
  logger: Logger;
  close(): Promise<void>;
}

export const VERSION: string = require('../../package.json').version;

/** Opens the vault and listens; resolves once the port is bound. */
export async function startServer(config: VaultConfig, logger: Logger = createLogger(config.logLevel)): Promise<RunningServer> {
  const opened = await openVault(config);
  const app = createApp({ vault: opened.vault, logger, version: VERSION });
  const server = app.listen(config.port, config.host);
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 5_000;
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
  return {
    url: `http://${host}:${port}`,
    server,
    opened,
    logger,
    close: () =>
      (closing ??= (async () => {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeIdleConnections();
        });
        await opened.close();
      })()),
  };
}
