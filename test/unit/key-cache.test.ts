import { expect } from 'chai';
import { KeyCache } from '../../src/keys/key-cache';

const key = (n: number) => Buffer.alloc(32, n);

describe('crypto / KeyCache', () => {
  it('evicts the least recently used key, not the first inserted', () => {
    const cache = new KeyCache({ ttlMs: 60_000, maxEntries: 2 });
    cache.set('a', key(1));
    cache.set('b', key(2));
    expect(cache.get('a')).to.deep.equal(key(1)); // a is now the most recently used
    cache.set('c', key(3));
    expect(cache.get('b')).to.equal(undefined);
    expect(cache.get('a')).to.deep.equal(key(1));
    expect(cache.get('c')).to.deep.equal(key(3));
  });

  it('evicts lower-ranked keys first, however recently they were used, and the least recently used within a rank', () => {
    const ranks: Record<string, number> = { audit: 2, active: 1 };
    const cache = new KeyCache({ ttlMs: 60_000, maxEntries: 3 }, (id) => ranks[id] ?? 0);
    cache.set('audit', key(1));
    cache.set('active', key(2));
    for (let version = 1; version <= 5; version++) {
      cache.set(`old${version}`, key(10 + version));
      expect(cache.get(`old${version}`)).to.deep.equal(key(10 + version));
    }
    expect(cache.get('audit')).to.deep.equal(key(1));
    expect(cache.get('active')).to.deep.equal(key(2));
    expect(cache.size).to.equal(3);

    ranks.other = 1; // more ranked keys than room: the lowest rank goes first
    cache.set('other', key(3));
    expect(cache.get('audit')).to.deep.equal(key(1));
    cache.set('another', key(4)); // rank 0, the only one: evicts the least recently used rank-1 key (active)
    expect(cache.get('active')).to.equal(undefined);
    expect(cache.get('audit')).to.deep.equal(key(1));
  });

  it('an expired key is not returned, and leaves the cache', async () => {
    const cache = new KeyCache({ ttlMs: 1, maxEntries: 2 }, () => 5);
    cache.set('stale', key(1));
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(cache.get('stale')).to.equal(undefined);
    expect(cache.size).to.equal(0);
  });
});
