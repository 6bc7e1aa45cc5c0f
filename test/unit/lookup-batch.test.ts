import { expect } from 'chai';
import { LookupBatch } from '../../src/store/postgres-lookup-batch';

interface Row {
  token: string;
  tenant: string;
}

/** A lookup over a fixed table that records what each statement asked for. */
function table(rows: Row[]) {
  const statements: string[][] = [];
  const lookup = async (tokens: string[]) => {
    statements.push(tokens);
    return rows.filter((r) => tokens.includes(r.token));
  };
  return { statements, lookup };
}

describe('store / LookupBatch (PostgreSQL token lookups of one event-loop turn in one statement)', () => {
  const rows: Row[] = [
    { token: 'a', tenant: 't1' },
    { token: 'a', tenant: 't2' },
    { token: 'b', tenant: 't1' },
    { token: 'c', tenant: 't1' },
  ];

  it('answers the lookups of one turn with one statement of their distinct tokens; each caller gets only its own tokens', async () => {
    const { statements, lookup } = table(rows);
    const batch = new LookupBatch<Row>(lookup, 100, 1000);
    const [first, second, third] = await Promise.all([batch.find(['a', 'x']), batch.find(['b', 'a']), batch.find(['y'])]);
    expect(statements).to.deep.equal([['a', 'x', 'b', 'y']]);
    expect([...first.keys()]).to.deep.equal(['a']);
    expect(first.get('a')!.map((r) => r.tenant)).to.deep.equal(['t1', 't2']);
    expect([...second.keys()].sort()).to.deep.equal(['a', 'b']);
    expect(third.size).to.equal(0);
  });

  it('lookups of a later turn get a statement of their own', async () => {
    const { statements, lookup } = table(rows);
    const batch = new LookupBatch<Row>(lookup, 100, 1000);
    await batch.find(['a']);
    await batch.find(['c']);
    expect(statements).to.deep.equal([['a'], ['c']]);
  });

  it('never asks for more than maxTokens tokens in one statement, unless one lookup alone is larger', async () => {
    const { statements, lookup } = table(rows);
    const batch = new LookupBatch<Row>(lookup, 3, 1000);
    const found = await Promise.all([batch.find(['a', 'b']), batch.find(['c', 'x']), batch.find(['p', 'q', 'r', 's'])]);
    expect(statements).to.deep.equal([
      ['a', 'b'],
      ['c', 'x'],
      ['p', 'q', 'r', 's'],
    ]);
    expect([...found[1].keys()]).to.deep.equal(['c']);
  });

  it('while maxInFlight statements are out, later lookups wait, then go together in one statement', async () => {
    const statements: string[][] = [];
    const gates: Array<() => void> = [];
    const batch = new LookupBatch<Row>(
      async (tokens) => {
        statements.push(tokens);
        await new Promise<void>((resolve) => gates.push(resolve));
        return rows.filter((r) => tokens.includes(r.token));
      },
      100,
      1,
    );
    const first = batch.find(['a']);
    await new Promise((resolve) => setImmediate(resolve));
    const later = [];
    for (const token of ['b', 'c', 'x']) {
      later.push(batch.find([token]));
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(statements).to.deep.equal([['a']]);
    gates.shift()!();
    expect((await first).has('a')).to.equal(true);
    while (statements.length < 2) await new Promise((resolve) => setImmediate(resolve));
    expect(statements).to.deep.equal([['a'], ['b', 'c', 'x']]);
    gates.shift()!();
    expect((await Promise.all(later)).map((found) => [...found.keys()])).to.deep.equal([['b'], ['c'], []]);
  });

  it("a failed statement fails every lookup it carried, and the next turn's lookups are unaffected", async () => {
    let fail = true;
    const batch = new LookupBatch<Row>(
      async (tokens) => {
        if (fail) throw new Error('database gone');
        return rows.filter((r) => tokens.includes(r.token));
      },
      100,
      1000,
    );
    const outcomes = await Promise.allSettled([batch.find(['a']), batch.find(['b'])]);
    expect(outcomes.map((o) => o.status)).to.deep.equal(['rejected', 'rejected']);
    fail = false;
    expect((await batch.find(['b'])).has('b')).to.equal(true);
  });
});
