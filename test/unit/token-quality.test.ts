/**
 * Token quality (issue 4, "Prove it" item 7): a million random tokens without a collision,
 * format-preserving tokens that keep exactly the configured digits, and fresh nonces for every
 * encryption of the same value.
 */
import crypto from 'node:crypto';
import { expect } from 'chai';
import { open, seal, NONCE_BYTES } from '../../src/crypto/aead';
import { luhnValid } from '../../src/domain/data-types';
import { generateToken } from '../../src/domain/token-formats';
import type { Preserve, TokenFormat } from '../../src/domain/types';
import { randomPan } from '../helpers/load';

/**
 * Samples for the collision and uniformity check. 200,000 keeps `npm test` quick on a slow day;
 * `npm run test:quality` runs this file with 1,000,000 (TOKEN_QUALITY_SAMPLES).
 */
const RANDOM_TOKEN_SAMPLES = Number(process.env.TOKEN_QUALITY_SAMPLES ?? 200_000);

describe('token quality', function () {
  this.timeout(300_000);

  it(`${RANDOM_TOKEN_SAMPLES.toLocaleString('en')} random-format tokens: no collision, all tok_ + 6 time + 24 random base62 characters, each character equally likely`, () => {
    const n = RANDOM_TOKEN_SAMPLES;
    const seen = new Set<string>();
    const shape = /^tok_[0-9A-Za-z]{30}$/;
    const counts = new Map<string, number>();
    let badShape = 0;
    for (let i = 0; i < n; i++) {
      const token = generateToken('random', 'none', 'x');
      if (!shape.test(token)) badShape++;
      seen.add(token);
      for (let p = 10; p < token.length; p++) counts.set(token[p], (counts.get(token[p]) ?? 0) + 1);
    }
    expect(badShape, 'tokens not shaped tok_ + 30 base62').to.equal(0);
    expect(seen.size, `${n - seen.size} collisions`).to.equal(n);
    // 24 random characters per token over 62 symbols. A modulo bias (256 = 4·62 + 8) would give 8
    // symbols 25% more than the others; ±5% is over 10σ even at 200,000 tokens.
    const expected = (n * 24) / 62;
    expect(counts.size, 'distinct symbols in the random part').to.equal(62);
    for (const [symbol, count] of counts) {
      expect(Math.abs(count - expected) / expected, `symbol ${symbol}: ${count} against ${Math.round(expected)} expected`).to.be.below(
        0.05,
      );
    }
  });

  describe('format-preserving tokens leak no more digits than configured', () => {
    const cases: Array<{ format: TokenFormat; preserve: Preserve; first: number; last: number }> = [
      { format: 'pan', preserve: 'none', first: 0, last: 0 },
      { format: 'pan', preserve: 'last4', first: 0, last: 4 },
      { format: 'pan', preserve: 'bin6', first: 6, last: 0 },
      { format: 'pan', preserve: 'bin6last4', first: 6, last: 4 },
      { format: 'digits', preserve: 'none', first: 0, last: 0 },
      { format: 'digits', preserve: 'last4', first: 0, last: 4 },
    ];
    const n = 10_000;
    for (const { format, preserve, first, last } of cases) {
      it(`${format}/${preserve}: over ${n.toLocaleString('en')} tokens per PAN length, ~10% equal digits outside the kept ${first}+${last}, 100% inside`, () => {
        for (const length of [12, 13, 16, 19]) {
          const pan = randomPan(length);
          const equalAt = new Array<number>(length).fill(0);
          let passesLuhn = 0;
          let wrongShape = 0;
          for (let i = 0; i < n; i++) {
            const token = generateToken(format, preserve, pan);
            if (token.length !== length || !/^\d+$/.test(token)) wrongShape++;
            if (luhnValid(token)) passesLuhn++;
            for (let p = 0; p < length; p++) if (token.charCodeAt(p) === pan.charCodeAt(p)) equalAt[p]!++;
          }
          const label = `${format}/${preserve} on a ${length}-digit PAN`;
          expect(wrongShape, `${label}: tokens not of ${length} digits`).to.equal(0);
          expect(passesLuhn, `${label}: tokens passing Luhn`).to.equal(0);
          let outsideEqual = 0;
          let outsideTotal = 0;
          for (let p = 0; p < length; p++) {
            const keptHere = p < first || p >= length - last;
            if (keptHere) {
              expect(equalAt[p], `${label}: kept position ${p}`).to.equal(n);
            } else {
              outsideEqual += equalAt[p]!;
              outsideTotal += n;
              // No single random position may lean towards the value's digit either.
              expect(equalAt[p]! / n, `${label}: random position ${p}`).to.be.below(0.13);
            }
          }
          const fraction = outsideEqual / outsideTotal;
          // Uniform random digits agree with the value's digit one time in ten (σ ≈ 0.3% here).
          expect(fraction, `${label}: fraction of equal digits outside the kept positions`).to.be.within(0.07, 0.13);
        }
      });
    }
  });

  it('100,000 encryptions of one value: 100,000 distinct nonces and ciphertexts, each opening to the value', () => {
    const n = 100_000;
    const key = crypto.randomBytes(32);
    const plaintext = Buffer.from('4111111111111111');
    const aad = Buffer.from('tenant=default;token=tok_x;v=1');
    const nonces = new Set<string>();
    const ciphertexts = new Set<string>();
    for (let i = 0; i < n; i++) {
      const sealed = seal(key, plaintext, aad);
      expect(sealed.nonce.length).to.equal(NONCE_BYTES);
      nonces.add(sealed.nonce.toString('base64'));
      ciphertexts.add(Buffer.concat([sealed.ciphertext, sealed.tag]).toString('base64'));
      // Spot-check that what was sealed opens to the value (every 1,000th, to keep the test fast).
      if (i % 1000 === 0) expect(open(key, sealed, aad).equals(plaintext)).to.equal(true);
    }
    expect(nonces.size, 'distinct nonces').to.equal(n);
    expect(ciphertexts.size, 'distinct ciphertexts').to.equal(n);
  });
});
