import { expect } from 'chai';
import { Batcher } from '../../src/keys/batcher';

describe('Batcher: group commit of an async store call', () => {
  it('items added in one turn go to one call; items added while it runs go to the next; each caller gets its own result', async () => {
    const calls: number[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const batcher = new Batcher(async (items: number[]) => {
      calls.push(items);
      if (calls.length === 1) await gate;
      return items.map((i) => i * 10);
    });
    const first = [1, 2, 3].map((i) => batcher.add(i));
    await new Promise((resolve) => setImmediate(resolve));
    const second = [4, 5].map((i) => batcher.add(i));
    release();
    expect(await Promise.all([...first, ...second])).to.deep.equal([10, 20, 30, 40, 50]);
    expect(calls).to.deep.equal([
      [1, 2, 3],
      [4, 5],
    ]);
  });

  it('a failed call rejects its own items only; the next batch runs', async () => {
    const batcher = new Batcher(async (items: string[]) => {
      if (items.includes('bad')) throw new Error('store down');
      return items;
    });
    const failed = Promise.all([batcher.add('bad'), batcher.add('ok')]).catch((e: Error) => e.message);
    expect(await failed).to.equal('store down');
    expect(await batcher.add('later')).to.equal('later');
  });
});
