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

  it('returns copies: neither a later refill of the pool nor changing one result changes another', () => {
    const first = pooledRandomBytes(16);
    const firstBytes = Buffer.from(first);
    expect(firstBytes.equals(Buffer.alloc(16)), 'handed out zeroed').to.equal(false);
    // 48 KiB drawn after it: the 16 KiB pool is refilled at least twice meanwhile.
    const later = Array.from({ length: 3 * 1024 }, () => pooledRandomBytes(16));
    const laterBytes = later.map((b) => Buffer.from(b));
    expect(first.equals(firstBytes), 'a refill changed an earlier result').to.equal(true);
    first.fill(0);
    later[0].fill(0xff);
    expect(
      later.slice(1).every((b, i) => b.equals(laterBytes[i + 1])),
      'changing one result changed another',
    ).to.equal(true);
    const next = pooledRandomBytes(16);
    expect(next.equals(Buffer.alloc(16)) || next.equals(Buffer.alloc(16, 0xff)), 'a change leaked into the pool').to.equal(false);
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
