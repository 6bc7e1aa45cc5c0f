/**
 * Fault injection and request statistics for the development KMS. DEV/TEST ONLY.
 */
import { isKmsErrorName, KMS_ERROR_NAMES, KmsError, type KmsErrorName } from './errors';

export interface Faults {
  /** Delay, in milliseconds, added before every KMS response. */
  latencyMs: number;
  /** The next N KMS requests answer ThrottlingException. */
  throttle: number;
  /** The next `count` KMS requests (all of them while `count` is absent) answer `error`. */
  fail: { error: KmsErrorName; count?: number } | null;
  /** Every KMS request is dropped (socket destroyed, no response). The /_dev endpoints keep working. */
  down: boolean;
}

export interface Stats {
  total: number;
  byOperation: Record<string, number>;
}

const NO_FAULTS: Faults = { latencyMs: 0, throttle: 0, fail: null, down: false };
const MAX_LATENCY_MS = 10 * 60 * 1000;

export class FaultController {
  private state: Faults = { ...NO_FAULTS };
  private counts: Stats = emptyStats();

  get current(): Faults {
    return { ...this.state, fail: this.state.fail && { ...this.state.fail } };
  }

  /** Merges the given faults into the current ones; throws TypeError on a malformed value. */
  set(update: Partial<Faults>): void {
    const next = this.current;
    if (update.latencyMs !== undefined) next.latencyMs = nonNegativeInteger(update.latencyMs, 'latencyMs', MAX_LATENCY_MS);
    if (update.throttle !== undefined) next.throttle = nonNegativeInteger(update.throttle, 'throttle', Number.MAX_SAFE_INTEGER);
    if (update.down !== undefined) {
      if (typeof update.down !== 'boolean') throw new TypeError('down must be a boolean');
      next.down = update.down;
    }
    if (update.fail !== undefined) next.fail = parseFail(update.fail);
    this.state = next;
  }

  clear(): void {
    this.state = { ...NO_FAULTS };
  }

  /** The injected error for the next KMS request, if any; consumes one unit of its count. */
  takeInjectedError(): KmsError | undefined {
    const fail = this.state.fail;
    if (fail) {
      if (fail.count !== undefined) {
        fail.count -= 1;
        if (fail.count <= 0) this.state.fail = null;
      }
      return new KmsError(fail.error, `Injected fault: ${fail.error}`);
    }
    if (this.state.throttle > 0) {
      this.state.throttle -= 1;
      return new KmsError('ThrottlingException', 'Rate exceeded (injected fault)');
    }
    return undefined;
  }

  record(operation: string): void {
    this.counts.total += 1;
    this.counts.byOperation[operation] = (this.counts.byOperation[operation] ?? 0) + 1;
  }

  get stats(): Stats {
    return { total: this.counts.total, byOperation: { ...this.counts.byOperation } };
  }

  resetStats(): void {
    this.counts = emptyStats();
  }
}

function emptyStats(): Stats {
  return { total: 0, byOperation: Object.create(null) as Record<string, number> };
}

function nonNegativeInteger(value: unknown, field: string, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > max) {
    throw new TypeError(`${field} must be an integer from 0 to ${max}`);
  }
  return value;
}

function parseFail(value: unknown): Faults['fail'] {
  if (value === null) return null;
  if (typeof value !== 'object' || Array.isArray(value)) throw new TypeError('fail must be {error, count?} or null');
  const { error, count } = value as { error?: unknown; count?: unknown };
  if (!isKmsErrorName(error)) throw new TypeError(`fail.error must be one of ${KMS_ERROR_NAMES.join(', ')}`);
  if (count === undefined || count === null) return { error };
  const n = nonNegativeInteger(count, 'fail.count', Number.MAX_SAFE_INTEGER);
  return n === 0 ? null : { error, count: n };
}
