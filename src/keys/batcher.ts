/**
 * Group commit for an async store call: the items asked for while a call is in flight (or within
 * one event-loop turn) go together into the next call of `run`, one call at a time; each caller
 * gets its own item's result once that call has completed.
 */
export class Batcher<I, O> {
  private queue: Array<{ item: I; resolve: (result: O) => void; reject: (error: unknown) => void }> = [];
  private running = false;

  constructor(private readonly run: (items: I[]) => Promise<O[]>) {}

  add(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      if (!this.running && this.queue.length === 1) setImmediate(() => void this.flush());
    });
  }

  private async flush(): Promise<void> {
    if (this.running || this.queue.length === 0) return;
    this.running = true;
    const batch = this.queue.splice(0);
    try {
      const results = await this.run(batch.map((b) => b.item));
      batch.forEach((b, i) => b.resolve(results[i]));
    } catch (err) {
      for (const b of batch) b.reject(err);
    } finally {
      this.running = false;
      if (this.queue.length > 0) void this.flush();
    }
  }
}
