import { expect } from 'chai';
import { cancelPendingWaits, firstOf, waitFor } from '../helpers/wait-for';

/** Pending timers, counted after a tick: mocha starts the test's own timeout timer once the test function returns. */
const timers = async () => {
  await Promise.resolve();
  return process.getActiveResourcesInfo().filter((name) => name === 'Timeout').length;
};

describe('test helpers / waitFor and firstOf', () => {
  it('waitFor polls until the predicate is truthy and resolves with its value', async () => {
    let calls = 0;
    const value = await waitFor(() => ++calls >= 3 && { calls }, { what: 'the third call', everyMs: 1 });
    expect(value).to.deep.equal({ calls: 3 });
  });

  it('waitFor rejects with the error the predicate throws (an assertion inside it fails the test)', async () => {
    const failed = await waitFor(
      async () => {
        throw new Error('boom');
      },
      { what: 'nothing' },
    ).catch((err: Error) => err.message);
    expect(failed).to.equal('boom');
  });

  it('a wait left pending when the test ends is cancelled, names what it waited for, and leaves no timer behind', async () => {
    const before = await timers();
    const never = waitFor(() => false, { what: 'a thing that never happens', everyMs: 1 });
    await new Promise((resolve) => setImmediate(resolve));
    expect(cancelPendingWaits()).to.deep.equal(['a thing that never happens']);
    expect(await never.catch((err: Error) => err.message)).to.equal('gave up waiting for a thing that never happens: the test ended');
    expect(await timers()).to.equal(before);
  });

  it('firstOf resolves with the first event, rejected ones included, and clears its timer', async () => {
    const before = await timers();
    await firstOf(60_000, Promise.reject(new Error('closed')));
    await firstOf(60_000, new Promise(() => undefined), Promise.resolve());
    expect(await timers()).to.equal(before);
  });
});
