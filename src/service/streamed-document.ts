/**
 * A JSON document answered in pieces: its fields, then one list whose items are produced page by
 * page (from paged store reads), so a subject with tens of thousands of records is never held in
 * memory at once. The HTTP layer writes it as `{...fields, [list]: [items...]}`.
 */
export class StreamedDocument<F extends object = object, I = unknown> {
  constructor(
    readonly fields: F,
    readonly list: string,
    readonly items: AsyncIterable<I>,
  ) {}

  /** The whole document in memory (for the CLI and tests; the HTTP layer streams it). */
  async collect(): Promise<F & Record<string, I[]>> {
    const items: I[] = [];
    for await (const item of this.items) items.push(item);
    return { ...this.fields, [this.list]: items } as F & Record<string, I[]>;
  }
}

/** Items of a keyset-paged read, one page in memory at a time. */
export async function* paged<R, K>(
  readPage: (after: K) => Promise<R[]>,
  keyOf: (row: R) => K,
  first: K,
  pageSize: number,
): AsyncIterable<R> {
  for (let after = first; ;) {
    const page = await readPage(after);
    yield* page;
    if (page.length < pageSize) return;
    after = keyOf(page[page.length - 1]);
  }
}
