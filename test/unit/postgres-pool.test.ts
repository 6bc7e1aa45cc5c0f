import { expect } from 'chai';
import { AddressInfo, Server, Socket, createServer } from 'node:net';
import { durablePool } from '../../src/store/postgres-pool';

/** A PostgreSQL wire-protocol message: type byte, length, body. */
function message(type: string, body: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeInt32BE(body.length + 4);
  return Buffer.concat([Buffer.from(type), length, body]);
}

const AUTHENTICATION_OK = message('R', Buffer.from([0, 0, 0, 0]));
const READY_FOR_QUERY = message('Z', Buffer.from('I'));
/** What a server shutting down sends a session (SIGTERM to the backend: "administrator command"). */
const TERMINATING = message(
  'E',
  Buffer.concat([Buffer.from('SFATAL\0C57P01\0Mterminating connection due to administrator command\0'), Buffer.from([0])]),
);

describe('store / PostgreSQL pool (durablePool)', () => {
  let server: Server;
  const sockets = new Set<Socket>();
  afterEach(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  it('a connection the server ends in the same packet that made it ready does not crash the process', async () => {
    // The session is ready and terminated in one write: the client reads both in one turn, before
    // whoever awaited pool.connect() can attach a listener for the error.
    server = createServer((socket) => {
      sockets.add(socket);
      socket.once('data', () => socket.write(Buffer.concat([AUTHENTICATION_OK, READY_FOR_QUERY, TERMINATING])));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const pool = durablePool(
      { url: `postgres://vault@127.0.0.1:${port}/vault`, poolSize: 1, connectTimeoutMs: 2_000, statementTimeoutMs: 2_000 },
      'pii-vault-test',
    );
    const uncaught: Error[] = [];
    const onUncaught = (err: Error) => uncaught.push(err);
    // Mocha's own handler would fail the test at once; this one records what would have crashed a vault.
    const mochaHandlers = process.listeners('uncaughtException');
    process.removeAllListeners('uncaughtException');
    process.on('uncaughtException', onUncaught);
    try {
      const client = await pool.connect();
      await new Promise((resolve) => setImmediate(resolve));
      client.release(true);
    } catch {
      // Failing to connect is fine; crashing is not.
    } finally {
      process.removeListener('uncaughtException', onUncaught);
      for (const handler of mochaHandlers) process.on('uncaughtException', handler);
      await pool.end().catch(() => undefined);
    }
    expect(uncaught.map((e) => e.message)).to.deep.equal([]);
  });
});
