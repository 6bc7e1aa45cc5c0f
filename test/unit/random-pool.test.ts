import { expect } from 'chai';
import { pooledRandomBytes } from '../../src/crypto/random-pool';

describe('crypto / pooledRandomBytes', () => {
  it('hands out the requested number of bytes, never the same bytes twice, across pool refills', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 20_000; i++) {
      const b = pooledRandomBytes(12);
      expect(b).to.have.length(12);
      seen.add(b.toString('hex'));
    }
    expect(seen.size).to.equal(20_000);
  });

  it('returns copies: changing one result changes no other', () => {
    const a = pooledRandomBytes(16);
    const copy = Buffer.from(a);
    a.fill(0);
    const b = pooledRandomBytes(16);
    expect(b.equals(Buffer.alloc(16))).to.equal(false);
    expect(copy.equals(Buffer.alloc(16))).to.equal(false);
  });

  it('serves requests larger than the pool directly', () => {
    const big = pooledRandomBytes(64 * 1024);
    expect(big).to.have.length(64 * 1024);
    expect(big.equals(Buffer.alloc(64 * 1024))).to.equal(false);
  });

  it('looks uniform: each byte value appears about equally often over 1 MiB', () => {
    const counts = new Array(256).fill(0);
    for (let i = 0; i < 1024; i++) for (const byte of pooledRandomBytes(1024)) counts[byte]++;
    const expected = (1024 * 1024) / 256;
    const chi = counts.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0);
    expect(chi).to.be.below(400); // 255 degrees of freedom; 400 is far in the tail
  });
});
