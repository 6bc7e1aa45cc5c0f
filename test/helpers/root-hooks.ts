/**
 * Mocha root hooks for every test file (loaded through .mocharc.json's `require`; they also run in
 * each worker of `--parallel`). Tests run without mocha's `exit: true`, so whatever a test leaves
 * running (a server, an interval, a child process) keeps the process from exiting: these hooks
 * stop the waits a test leaves behind, and name what is still running when a file is done.
 */
import { cancelPendingWaits } from './wait-for';

export const mochaHooks = {
  afterEach(this: Mocha.Context) {
    const left = cancelPendingWaits();
    if (left.length > 0) process.stderr.write(`      (${this.currentTest?.fullTitle()}: ended while waiting for ${left.join('; ')})\n`);
  },
  afterAll() {
    // A parallel worker outlives its files on purpose (it waits for the next one): nothing to name there.
    if (process.env.MOCHA_WORKER_ID !== undefined) return;
    // Runs only if something still holds the event loop a while after the last test: names it.
    setTimeout(() => {
      const resources = process.getActiveResourcesInfo().filter((name) => name !== 'TTYWrap');
      process.stderr.write(`\nstill running ${STILL_RUNNING_AFTER_MS} ms after the last test: ${resources.join(', ')}\n`);
    }, STILL_RUNNING_AFTER_MS).unref();
  },
};

const STILL_RUNNING_AFTER_MS = 5_000;
