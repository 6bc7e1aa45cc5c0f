/**
 * Waiting for something to happen, without asserting how long it takes: these machines' speed
 * varies several times between days, so the mocha test timeout is the only bound. When a test ends
 * (passed, failed or timed out) the root hooks (test/helpers/root-hooks.ts) cancel the waits it
 * left behind, so no poll keeps the process alive.
 */

type Truthy<T> = Exclude<T, false | 0 | '' | null | undefined>;

const pending = new Set<{ what: string; cancel(): void }>();

/**
 * Polls `predicate` every `everyMs` until it returns a truthy value, and resolves with that value.
 * `what` names the awaited condition: it is reported when the test ends still waiting.
 */
export function waitFor<T>(
  predicate: () => T | Promise<T>,
  { what, everyMs = 20 }: { what: string; everyMs?: number },
): Promise<Truthy<T>> {
  return new Promise<Truthy<T>>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const wait = {
      what,
      cancel: () => {
        clearTimeout(timer);
        pending.delete(wait);
        reject(new Error(`gave up waiting for ${what}: the test ended`));
      },
    };
    pending.add(wait);
    const poll = async () => {
      try {
        const value = await predicate();
        if (!pending.has(wait)) return;
        if (value) {
          pending.delete(wait);
          resolve(value as Truthy<T>);
        } else {
          timer = setTimeout(() => void poll(), everyMs);
        }
      } catch (err) {
        pending.delete(wait);
        reject(err);
      }
    };
    void poll();
  });
}

/** Cancels every wait still pending; returns what they were waiting for. */
export function cancelPendingWaits(): string[] {
  const left = [...pending];
  for (const wait of left) wait.cancel();
  return left.map((wait) => wait.what);
}

/**
 * Resolves when the first of `events` settles, or after `ms` (a bound that is itself the behaviour,
 * such as how long a slow client keeps trying), and clears its timer either way so that it does
 * not keep the process alive.
 */
export async function firstOf(ms: number, ...events: Promise<unknown>[]): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const elapsed = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  try {
    await Promise.race([
      elapsed,
      ...events.map((event) =>
        event.then(
          () => undefined,
          () => undefined,
        ),
      ),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
