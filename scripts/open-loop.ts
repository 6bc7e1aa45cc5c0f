/**
 * An open-loop load generator: requests leave on a fixed schedule (in 1 ms slots) whether or
 * not earlier ones have been answered, as real clients do, so a stalled server keeps receiving
 * load and every request caught behind the stall shows it in the percentiles (no "coordinated
 * omission"). Latency runs from when a request was issued, including any wait for a free
 * connection; the generator's own timer granularity (~1 ms) shapes arrivals but is not counted.
 *
 * autocannon's own rate option is not this: it sends each connection's per-second budget
 * back-to-back at the start of every second, which is a closed-loop burst.
 */
import http from 'node:http';

export interface OpenLoopRequest {
  path: string;
  headers: Record<string, string>;
  body: string;
}

export interface OpenLoopOptions {
  /** Servers to load; requests go to each in turn (several instances behind one balancer). */
  urls: string[];
  /** Requests per second, spread over 1 ms ticks. */
  rate: number;
  durationSeconds: number;
  next: () => OpenLoopRequest;
  /** Keep-alive connections available per server; a request waits for a free one (and that wait counts). */
  connections?: number;
}

export interface OpenLoopResult {
  sent: number;
  ok: number;
  errors: number;
  /** Achieved rate of answered requests. */
  reqPerSec: number;
  /** Milliseconds, from when each request was issued. */
  latency: { p50: number; p99: number; p999: number; max: number };
}

const TICK_MS = 1;

export async function openLoop(options: OpenLoopOptions): Promise<OpenLoopResult> {
  const targets = options.urls.map((url) => new URL(url));
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.connections ?? 64 });
  const total = Math.round(options.rate * options.durationSeconds);
  const latencies = new Float64Array(total);
  let sent = 0;
  let answered = 0;
  let ok = 0;
  let errors = 0;

  const send = (done: () => void) => {
    const issued = performance.now();
    const next = options.next();
    const target = targets[sent % targets.length];
    const req = http.request(
      {
        agent,
        host: target.hostname,
        port: target.port,
        method: 'POST',
        path: next.path,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(next.body), ...next.headers },
      },
      (res) => {
        res.resume();
        res.once('end', () => {
          latencies[answered++] = performance.now() - issued;
          if (res.statusCode! >= 200 && res.statusCode! < 300) ok++;
          else errors++;
          done();
        });
      },
    );
    req.once('error', () => {
      latencies[answered++] = performance.now() - issued;
      errors++;
      done();
    });
    req.end(next.body);
  };

  const started = performance.now();
  await new Promise<void>((resolve) => {
    const finished = () => {
      if (answered === total) resolve();
    };
    // Requests are due in 1 ms slots; every tick sends those whose slot has come.
    const perSlot = (options.rate * TICK_MS) / 1000;
    const tick = () => {
      const slot = Math.floor((performance.now() - started) / TICK_MS);
      const dueByNow = Math.min(total, Math.ceil((slot + 1) * perSlot));
      while (sent < dueByNow) {
        sent++;
        send(finished);
      }
      if (sent === total) clearInterval(timer);
    };
    const timer = setInterval(tick, TICK_MS);
    tick();
  });
  const elapsed = (performance.now() - started) / 1000;
  agent.destroy();
  return { sent, ok, errors, reqPerSec: Math.round(ok / elapsed), latency: percentiles(latencies.subarray(0, answered)) };
}

/** Nearest-rank percentiles, rounded to 0.01 ms. */
export function percentiles(samples: Float64Array): OpenLoopResult['latency'] {
  const sorted = Float64Array.from(samples).sort();
  const at = (q: number) => {
    if (sorted.length === 0) return 0;
    const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
    return Math.round(sorted[rank] * 100) / 100;
  };
  return { p50: at(0.5), p99: at(0.99), p999: at(0.999), max: at(1) };
}
