/**
 * Property-based tests (fast-check) of every validator and token format in src/domain
 * (issue 4, "Prove it" item 6, first half). Generators build only valid values of each type
 * (PANs with a computed Luhn digit, SSNs in the assignable ranges, E.164 numbers libphonenumber
 * accepts, IBANs with a computed mod-97 check, …) in the many raw spellings the API accepts.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { parsePhoneNumberFromString } from 'libphonenumber-js/max';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { TokenString } from '../../src/contract/schemas';
import { CARD_BRANDS } from '../../src/domain/card-brands';
import {
  DATA_TYPE_SPECS,
  display,
  ibanValid,
  luhnCheckDigit,
  luhnValid,
  revealsAnything,
  type NormalizeOptions,
} from '../../src/domain/data-types';
import { IBAN_LENGTHS } from '../../src/domain/iban-registry';
import { checkFormat, generateToken } from '../../src/domain/token-formats';
import {
  DATA_TYPES,
  DomainValidationError,
  PRESERVE_OPTIONS,
  TOKEN_FORMATS,
  type DataType,
  type Preserve,
  type RandomBytes,
  type TokenFormat,
} from '../../src/domain/types';

const RUNS = 300;
const run = { numRuns: RUNS };

const normalize = (type: DataType, raw: string, options?: NormalizeOptions) => DATA_TYPE_SPECS[type].normalize(raw, options);
const mask = (type: DataType, normalized: string) => DATA_TYPE_SPECS[type].mask(normalized);

// ---------------------------------------------------------------- generators of valid raw values

const digit = fc.integer({ min: 0, max: 9 }).map(String);
const digitString = (minLength: number, maxLength: number) => fc.array(digit, { minLength, maxLength }).map((ds) => ds.join(''));

/** Inserts spaces and dashes between characters, the way people type card and social security numbers. */
function withSeparators(chars: string, separators: readonly string[]): string {
  let out = '';
  for (let i = 0; i < chars.length; i++) out += chars[i] + (separators[i] ?? '');
  return out;
}
const separatorsFor = (length: number) =>
  fc.array(fc.constantFrom('', '', '', ' ', '-', ' - ', '  '), { minLength: length, maxLength: length });

/** A valid PAN of `minLength`–`maxLength` digits (Luhn check digit computed). */
const panDigits = (minLength = 12, maxLength = 19) => digitString(minLength - 1, maxLength - 1).map((body) => body + luhnCheckDigit(body));
const panRaw = panDigits().chain((digits) =>
  separatorsFor(digits.length).map((seps) => ({ raw: withSeparators(digits, seps.slice(0, -1)), digits })),
);

const ssnDigits = fc
  .tuple(
    fc.integer({ min: 1, max: 899 }).filter((area) => area !== 666),
    fc.integer({ min: 1, max: 99 }),
    fc.integer({ min: 1, max: 9999 }),
  )
  .map(([a, g, s]) => `${String(a).padStart(3, '0')}${String(g).padStart(2, '0')}${String(s).padStart(4, '0')}`);
const ssnRaw = ssnDigits.chain((digits) =>
  fc.constantFrom('plain', 'dashes', 'spaces', 'random').chain((style) => {
    if (style === 'plain') return fc.constant({ raw: digits, digits });
    if (style === 'dashes') return fc.constant({ raw: `${digits.slice(0, 3)}-${digits.slice(3, 5)}-${digits.slice(5)}`, digits });
    if (style === 'spaces') return fc.constant({ raw: `${digits.slice(0, 3)} ${digits.slice(3, 5)} ${digits.slice(5)}`, digits });
    return separatorsFor(9).map((seps) => ({ raw: withSeparators(digits, seps.slice(0, -1)), digits }));
  }),
);

/** RFC 5322 atext (and dots), without `*`: a local part like `j***` is indistinguishable from its own mask. */
const EMAIL_LOCAL_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'+/=?^_`{|}~.-";
const labelChar = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789');
const domainLabel = fc
  .tuple(
    labelChar,
    fc
      .oneof(fc.constant(0), fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 61 }))
      .chain((n) => fc.array(fc.constantFrom(...'abcdefXYZ0189-'), { minLength: n, maxLength: n })),
    labelChar,
  )
  .map(([first, middle, last]) => (middle.length === 0 && first === last ? first : first + middle.join('') + last));
const tld = fc.array(fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzCOMNET'), { minLength: 2, maxLength: 8 }).map((cs) => cs.join(''));
const emailRaw = fc
  .record({
    local: fc.array(fc.constantFrom(...EMAIL_LOCAL_CHARS), { minLength: 1, maxLength: 64 }).map((cs) => cs.join('')),
    labels: fc.array(domainLabel, { minLength: 1, maxLength: 4 }),
    tld,
    pad: fc.constantFrom('', ' ', '  ', '\u00a0', ' \u2003'),
  })
  .map(({ local, labels, tld: top, pad }) => {
    const domain = [...labels, top].join('.');
    return { raw: `${pad}${local}@${domain}${pad}`, normalized: `${local}@${domain.toLowerCase()}` };
  })
  .filter(({ normalized }) => normalized.length <= 254);

/** US numbers in real area codes with a valid exchange (N = 2–9). */
// prettier-ignore
const US_AREA_CODES = [
  '201', '202', '206', '212', '213', '214', '305', '310', '312', '404', '415', '503', '512', '617', '646', '702', '713', '718', '720',
  '805', '818', '917',
];
const usNumber = fc
  .tuple(fc.constantFrom(...US_AREA_CODES), fc.integer({ min: 2, max: 9 }), digitString(2, 2), digitString(4, 4))
  .map(([area, n, xx, line]) => ({ cc: '1', national: `${area}${n}${xx}${line}` }));
/** French mobile numbers (+33 6 / +33 7 and eight digits). */
const frNumber = fc.tuple(fc.constantFrom('6', '7'), digitString(8, 8)).map(([p, rest]) => ({ cc: '33', national: p + rest }));
/** UK mobile numbers. */
const gbNumber = fc
  .tuple(fc.constantFrom('74', '75', '77', '78', '79'), digitString(8, 8))
  .map(([p, rest]) => ({ cc: '44', national: p + rest }));
/** Kept only when they lie in a range the numbering plan assigns (libphonenumber's full metadata), as the vault requires. */
const assignedNumber = fc
  .oneof(usNumber, frNumber, gbNumber)
  .filter(({ cc, national }) => parsePhoneNumberFromString(`+${cc}${national}`)?.isValid() === true);
const phoneRaw = assignedNumber.chain(({ cc, national }) => {
  const e164 = `+${cc}${national}`;
  const spellings = [
    e164,
    `+${cc} ${national}`,
    `00${cc}${national}`,
    `00 ${cc} ${national}`,
    `+${cc}-${national.slice(0, 3)}-${national.slice(3, 6)}-${national.slice(6)}`,
    `+${cc} (${national.slice(0, 3)}) ${national.slice(3, 6)}.${national.slice(6)}`,
    ` +${cc} ${national.slice(0, 3)} ${national.slice(3)} `,
  ];
  const options: NormalizeOptions | undefined = cc === '1' ? { phoneRegion: 'US' } : cc === '44' ? { phoneRegion: 'gb' } : undefined;
  const withRegion =
    cc === '1' ? [`(${national.slice(0, 3)}) ${national.slice(3, 6)}-${national.slice(6)}`, national] : cc === '44' ? [`0${national}`] : [];
  return fc.oneof(
    fc.constantFrom(...spellings).map((raw) => ({ raw, e164, options: undefined as NormalizeOptions | undefined })),
    fc.constantFrom(...spellings, ...withRegion).map((raw) => ({ raw, e164, options: options ?? { phoneRegion: 'FR' } })),
  );
});

/** Letters from several scripts, including decomposed sequences that NFC composes. */
// prettier-ignore
const nameChar = fc.constantFrom(
  ...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ', 'é', 'e\u0301', 'A\u030a', 'ñ', 'n\u0303', 'ß', 'Ø', 'ł', 'ç', 'Ж', 'я', 'Ω',
  'λ', 'ש', 'م', '李', '王', '明', 'カ', 'ナ', '한', '글', 'ก', '\u{1D400}', 'ǅ', "'", '-', '.', '·',
);
const nameInitial = fc.constantFrom('a', 'Z', 'é', 'e\u0301', 'Ж', '李', 'ש');
const nameWord = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.tuple(nameInitial, fc.array(nameChar, { minLength: 1, maxLength: 12 })).map(([first, rest]) => first + rest.join('')),
  },
  // Initials and one-letter given names ("J R R", "O Li").
  { weight: 1, arbitrary: nameInitial },
);
const nameSpace = fc.constantFrom(' ', ' ', '  ', '\u00a0', '\u2003', '\u3000', ' \u2009 ');
const nameRaw = fc
  .tuple(fc.array(fc.tuple(nameWord, nameSpace), { minLength: 1, maxLength: 6 }), fc.constantFrom('', ' ', '\u00a0 '))
  .map(([words, pad]) => pad + words.map(([w, s]) => w + s).join('') + pad);

const today = new Date();
const dobRaw = fc
  .date({ min: new Date(Date.UTC(1870, 0, 1)), max: new Date(today.getTime() - 2 * 86_400_000), noInvalidDate: true })
  .map((d) => d.toISOString().slice(0, 10));

const addressWord = fc.oneof(
  { weight: 1, arbitrary: fc.constantFrom('#', '-', '/', 'c/o', '№') },
  fc
    .array(fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789', 'ß', 'é', 'ü', 'Ж', '号', '#', '/', '.'), {
      minLength: 1,
      maxLength: 10,
    })
    .map((cs) => cs.join('')),
  fc.integer({ min: 1, max: 99999 }).map(String),
);
const addressLine = fc
  .tuple(
    fc.array(fc.tuple(addressWord, fc.constantFrom(' ', ' ', ', ', '\t', '  ', '\u00a0')), { minLength: 1, maxLength: 6 }),
    fc.constantFrom('', ' ', '\t '),
  )
  .map(([words, pad]) => pad + words.map(([w, s]) => w + s).join('') + pad);
const addressRaw = fc
  .array(fc.tuple(addressLine, fc.constantFrom('\n', '\r\n', '\r', '\n\n', '\n \n')), { minLength: 1, maxLength: 5 })
  .map((lines) => lines.map(([l, nl]) => l + nl).join(''))
  .filter((raw) => /[\p{L}\p{N}]/u.test(raw));

const ALNUM_UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
/** An IBAN with its two check digits computed by ISO 13616 mod-97. */
function ibanWithCheck(country: string, bban: string): string {
  const rearranged = `${bban}${country}00`;
  let remainder = 0;
  for (const ch of rearranged) {
    const value = ch >= 'A' ? String(ch.charCodeAt(0) - 55) : ch;
    for (const d of value) remainder = (remainder * 10 + Number(d)) % 97;
  }
  return `${country}${String(98 - remainder).padStart(2, '0')}${bban}`;
}
/** A registry country and a BBAN of the length that makes its IBAN the country's length. */
const ibanNormalized = fc
  .constantFrom(...Object.entries(IBAN_LENGTHS))
  .chain(([country, length]) =>
    fc
      .array(fc.constantFrom(...ALNUM_UPPER), { minLength: length - 4, maxLength: length - 4 })
      .map((cs) => ibanWithCheck(country, cs.join(''))),
  );
const ibanRaw = ibanNormalized.chain((iban) =>
  fc
    .record({ grouped: fc.boolean(), lower: fc.array(fc.boolean(), { minLength: iban.length, maxLength: iban.length }) })
    .map(({ grouped, lower }) => {
      const cased = Array.from(iban, (ch, i) => (lower[i] ? ch.toLowerCase() : ch)).join('');
      return { raw: grouped ? cased.replace(/(.{4})/g, '$1 ').trim() : cased, normalized: iban };
    }),
);

const textRaw = fc
  .array(
    fc.oneof(
      { weight: 5, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 }) },
      { weight: 1, arbitrary: fc.constantFrom('\n', '\t', '\r\n', ' ', 'e\u0301', '\u0958', '\u{1F600}', '\u200b', '\ufeff', '\u2028') },
    ),
    { minLength: 1, maxLength: 20 },
  )
  .map((parts) => parts.join(''))
  .filter((s) => s.length <= 4096);

/** A valid raw value of each type with the options it needs. */
const validRaw: Record<DataType, fc.Arbitrary<{ raw: string; options?: NormalizeOptions }>> = {
  pan: panRaw,
  ssn: ssnRaw,
  email: emailRaw,
  phone: phoneRaw,
  name: nameRaw.map((raw) => ({ raw })),
  dob: dobRaw.map((raw) => ({ raw })),
  address: addressRaw.map((raw) => ({ raw })),
  iban: ibanRaw,
  text: textRaw.map((raw) => ({ raw })),
};

// ---------------------------------------------------------------- generators of arbitrary strings

/** Characters that trip up validators: controls, lone surrogates, invisible and look-alike characters. */
// prettier-ignore
const weirdChar = fc.constantFrom(
  '\u0000', '\u0007', '\b', '\t', '\n', '\v', '\f', '\r', '\u001b', '\u007f', '\u0085', '\u00a0', '\u00ad', '\u034f', '\u061c', '\u1680',
  '\u180e', '\u2000', '\u200b', '\u200c', '\u200d', '\u200e', '\u200f', '\u2028', '\u2029', '\u202e', '\u2060', '\u2066', '\u3000',
  '\ufeff', '\ufffd', '\ufffe', '\uffff', '\ud800', '\udbff', '\udc00', '\udfff', '\u{10ffff}', '\u{e0001}', '\u{1f600}', '\u0301',
  '\u0958', '\u1e9e', 'ß', 'İ', 'ı', 'ﬀ', 'Ⅻ', '١', '٢', '۳', '०', '१', '０', '９', '𝟎', '𝟗', '＋', '－', '＠', '．', '@', '+', '-', ' ', '.',
  '/', '(', ')', '^', '=', '%', ';', '\\', '"', "'", '`', '$', '{', '}', '[', ']', '*', '0', '1', '4', '9', 'a', 'Z', 'x',
);
const arbitraryString = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary', maxLength: 60 }),
  fc.string({ unit: 'grapheme', maxLength: 60 }),
  fc.string({ unit: weirdChar, maxLength: 60 }),
  fc.string({ unit: fc.constantFrom(...'0123456789 -+()./@'), maxLength: 40 }),
  fc.string({ unit: fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c)), maxLength: 10 }),
  // Near and over the shared 4,096-character limit.
  fc.tuple(fc.constantFrom('4', 'a', ' ', '\u0958', '\u{1f600}', 'é'), fc.integer({ min: 4000, max: 4200 })).map(([c, n]) => c.repeat(n)),
  // A valid value of some type with a weird character spliced in.
  fc
    .tuple(
      fc.constantFrom(...DATA_TYPES).chain((t) => validRaw[t]),
      weirdChar,
      fc.nat(),
    )
    .map(([{ raw }, ch, at]) => raw.slice(0, at % (raw.length + 1)) + ch + raw.slice(at % (raw.length + 1))),
);
// prettier-ignore
const phoneRegionOption = fc.constantFrom<NormalizeOptions | undefined>(
  undefined, { phoneRegion: 'US' }, { phoneRegion: 'gb' }, { phoneRegion: 'XX' }, { phoneRegion: 'ß' }, { phoneRegion: '' },
  { phoneRegion: '__proto__' }, { phoneRegion: 'constructor' },
);

/** What a leaking message could contain that would identify the value: the input, trimmed, or its digits. */
function needles(raw: string): string[] {
  const out = new Set<string>();
  for (const s of [raw, raw.trim()]) if (s.length >= 4) out.add(s);
  for (const s of [raw.replace(/[ -]/g, ''), raw.replace(/\D/g, '')]) if (s.length >= 5) out.add(s);
  return [...out];
}

// ---------------------------------------------------------------- helpers for masks and tokens

/** Characters of a mask that are not `*` (what a viewer sees of the value). */
const visible = (s: string) => Array.from(s).filter((c) => c !== '*').length;
const lettersAndDigits = (s: string) => (s.match(/[\p{L}\p{N}]/gu) ?? []).length;

/** A deterministic random source built from fast-check bytes, so token properties also shrink. */
function byteSource(bytes: readonly number[]): RandomBytes {
  let i = 0;
  return (size) => Buffer.from(Array.from({ length: size }, () => bytes[i++ % bytes.length]!));
}
/** Byte streams that always contain usable bytes (every alphabet accepts bytes below 248). */
const randomByteStream = fc
  .tuple(fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 64 }), fc.integer({ min: 0, max: 247 }))
  .map(([bytes, usable]) => [...bytes, usable]);

const PAN_PRESERVES = ['none', 'last4', 'bin6', 'bin6last4'] as const;
const kept = (preserve: Preserve) => ({
  first: preserve === 'bin6' || preserve === 'bin6last4' ? 6 : 0,
  last: preserve === 'last4' || preserve === 'bin6last4' ? 4 : 0,
});

/** Asserts the shape of a digits/pan token against its value. */
function expectDigitsToken(token: string, value: string, first: number, last: number): void {
  expect(token).to.match(/^\d+$/);
  expect(token).to.have.length(value.length);
  expect(token.slice(0, first)).to.equal(value.slice(0, first));
  expect(token.slice(value.length - last)).to.equal(value.slice(value.length - last));
  expect(luhnValid(token), `token ${token} passes Luhn`).to.equal(false);
  expect(token).not.to.equal(value);
}

// ---------------------------------------------------------------- tests

describe('properties / data types (fast-check)', () => {
  describe('generators produce valid values', () => {
    // Guards the generators themselves: a generator that only produced rejected values would make
    // every property below vacuous.
    for (const type of DATA_TYPES) {
      it(`${type}: every generated value is accepted`, () => {
        fc.assert(
          fc.property(validRaw[type], ({ raw, options }) => {
            expect(() => normalize(type, raw, options), JSON.stringify(raw)).not.to.throw();
          }),
          run,
        );
      });
    }
  });

  describe('normalize is canonical', () => {
    for (const type of DATA_TYPES) {
      it(`${type}: normalize(normalize(x)) === normalize(x)`, () => {
        fc.assert(
          fc.property(validRaw[type], ({ raw, options }) => {
            const once = normalize(type, raw, options);
            expect(normalize(type, once, options)).to.equal(once);
            // The canonical form is stable without the options too (phone: E.164 needs no region).
            expect(normalize(type, once)).to.equal(once);
          }),
          run,
        );
      });
    }

    it('pan: the digits, whatever the spaces and dashes', () => {
      fc.assert(
        fc.property(panRaw, ({ raw, digits }) => {
          expect(normalize('pan', raw)).to.equal(digits);
        }),
        run,
      );
    });
    it('ssn: the nine digits, whatever the spaces and dashes', () => {
      fc.assert(
        fc.property(ssnRaw, ({ raw, digits }) => {
          expect(normalize('ssn', raw)).to.equal(digits);
        }),
        run,
      );
    });
    it('email: trimmed, local part as is, domain lower-cased', () => {
      fc.assert(
        fc.property(emailRaw, ({ raw, normalized }) => {
          expect(normalize('email', raw)).to.equal(normalized);
        }),
        run,
      );
    });
    it('phone: E.164, whatever the spelling and region', () => {
      fc.assert(
        fc.property(phoneRaw, ({ raw, e164, options }) => {
          expect(normalize('phone', raw, options)).to.equal(e164);
        }),
        run,
      );
    });
    it('iban: upper case without spaces', () => {
      fc.assert(
        fc.property(ibanRaw, ({ raw, normalized }) => {
          expect(normalize('iban', raw)).to.equal(normalized);
          expect(ibanValid(normalized)).to.equal(true);
        }),
        run,
      );
    });
    it('iban: changing one character breaks the mod-97 check', () => {
      fc.assert(
        fc.property(ibanNormalized, fc.nat(), fc.constantFrom(...ALNUM_UPPER), (iban, at, ch) => {
          const i = 4 + (at % (iban.length - 4));
          fc.pre(iban[i] !== ch);
          // Digits and letters expand differently, so only same-class substitutions are guaranteed detected.
          fc.pre(/\d/.test(iban[i]!) === /\d/.test(ch));
          const changed = iban.slice(0, i) + ch + iban.slice(i + 1);
          expect(ibanValid(changed)).to.equal(false);
        }),
        run,
      );
    });
    it('pan: changing one digit breaks the Luhn check', () => {
      fc.assert(
        fc.property(panDigits(), fc.nat(), fc.integer({ min: 1, max: 9 }), (pan, at, delta) => {
          const i = at % pan.length;
          const changed = pan.slice(0, i) + String((Number(pan[i]) + delta) % 10) + pan.slice(i + 1);
          expect(() => normalize('pan', changed)).to.throw(DomainValidationError);
        }),
        run,
      );
    });
  });

  describe('normalize on arbitrary strings', () => {
    for (const type of DATA_TYPES) {
      it(`${type}: returns a canonical value or throws DomainValidationError('invalid_value') whose message holds no part of the input`, () => {
        fc.assert(
          fc.property(arbitraryString, type === 'phone' ? phoneRegionOption : fc.constant(undefined), (raw, options) => {
            let normalized: string;
            try {
              normalized = normalize(type, raw, options);
            } catch (err) {
              expect(err, `${type} ${JSON.stringify(raw)} threw a ${(err as Error)?.name}`).to.be.instanceOf(DomainValidationError);
              const { code, message } = err as DomainValidationError;
              expect(code).to.equal('invalid_value');
              for (const needle of needles(raw)) expect(message, `message leaks ${JSON.stringify(needle)}`).not.to.include(needle);
              return;
            }
            // Anything accepted is canonical: stable under a second pass, and maskable.
            expect(normalize(type, normalized, options)).to.equal(normalized);
            expect(mask(type, normalized)).to.be.a('string');
          }),
          { numRuns: 500 },
        );
      });
    }

    it('rejects non-string input of any kind with DomainValidationError', () => {
      fc.assert(
        fc.property(
          fc.constantFrom(...DATA_TYPES),
          fc.anything().filter((x) => typeof x !== 'string'),
          (type, x) => {
            expect(() => normalize(type, x as string)).to.throw(DomainValidationError);
          },
        ),
        run,
      );
    });
  });

  describe('mask', () => {
    for (const type of DATA_TYPES) {
      it(`${type}: never the whole value (5+ characters) and never more visible characters than the value`, () => {
        fc.assert(
          fc.property(validRaw[type], ({ raw, options }) => {
            const normalized = normalize(type, raw, options);
            const masked = mask(type, normalized);
            const shown = `${JSON.stringify(normalized)} is masked as ${JSON.stringify(masked)}`;
            // A value made only of whitespace (text) has nothing to hide.
            if (normalized.length >= 5 && /[^\s*]/u.test(normalized)) expect(masked, shown).not.to.equal(normalized);
            expect(visible(masked), shown).to.be.at.most(normalized.length);
            expect(lettersAndDigits(masked), shown).to.be.at.most(lettersAndDigits(normalized));
          }),
          run,
        );
      });
    }

    it('pan: exactly the last four digits are visible', () => {
      fc.assert(
        fc.property(panDigits(), (pan) => {
          const masked = mask('pan', pan);
          expect(masked).to.have.length(pan.length);
          expect(masked).to.equal('*'.repeat(pan.length - 4) + pan.slice(-4));
        }),
        run,
      );
    });

    it('ssn, phone, iban, dob, email: only the documented parts are visible', () => {
      fc.assert(
        fc.property(ssnDigits, (ssn) => {
          expect(mask('ssn', ssn)).to.equal(`***-**-${ssn.slice(-4)}`);
        }),
        run,
      );
      fc.assert(
        fc.property(phoneRaw, ({ e164 }) => {
          expect(mask('phone', e164)).to.equal(`+${'*'.repeat(e164.length - 5)}${e164.slice(-4)}`);
        }),
        run,
      );
      fc.assert(
        fc.property(ibanNormalized, (iban) => {
          expect(mask('iban', iban)).to.equal(iban.slice(0, 2) + '*'.repeat(iban.length - 6) + iban.slice(-4));
        }),
        run,
      );
      fc.assert(
        fc.property(dobRaw, (dob) => {
          expect(mask('dob', dob)).to.equal(`${dob.slice(0, 4)}-**-**`);
        }),
        run,
      );
      fc.assert(
        fc.property(emailRaw, ({ normalized }) => {
          const [local, domain] = normalized.split('@') as [string, string];
          expect(mask('email', normalized)).to.equal(`${local[0]}***@${domain}`);
        }),
        run,
      );
    });

    it('name and text: letters other than initials, and every non-space character of text, are starred', () => {
      fc.assert(
        fc.property(nameRaw, (raw) => {
          const normalized = normalize('name', raw);
          const masked = mask('name', normalized);
          const words = normalized.split(' ');
          expect(masked.split(' ').map((w) => Array.from(w).length)).to.deep.equal(words.map((w) => Array.from(w).length));
          expect(visible(masked)).to.be.at.most(words.length + words.length - 1);
        }),
        run,
      );
      fc.assert(
        fc.property(textRaw, (raw) => {
          const masked = mask('text', normalize('text', raw));
          expect(masked.replace(/[*\s]/gu, '').replace(/…$/, '')).to.equal('');
        }),
        run,
      );
    });
  });

  describe('generalize', () => {
    const generalized = (type: DataType, normalized: string) => display(type, 'generalized', normalized);
    const digits = (s: string) => s.match(/\p{N}/gu) ?? [];

    /** PANs in IIN ranges of every brand, beside random ones (mostly of no known brand). */
    const brandedPan = fc
      .tuple(
        fc.constantFrom(
          '4',
          '51',
          '55',
          '2221',
          '2720',
          '34',
          '37',
          '6011',
          '644',
          '65',
          '3528',
          '3589',
          '300',
          '3095',
          '36',
          '38',
          '62',
          '5018',
          '6763',
          '2200',
        ),
        digitString(11, 14),
      )
      .map(([iin, rest]) => iin + rest)
      .map((body) => body + luhnCheckDigit(body));

    it('pan: the card brand or redacted, never a digit of the card', () => {
      fc.assert(
        fc.property(fc.oneof(panDigits(), brandedPan), (raw) => {
          const shown = generalized('pan', normalize('pan', raw));
          if (shown.value === null) {
            expect(shown.reveal).to.equal('redacted');
            return;
          }
          expect(CARD_BRANDS).to.include(shown.value);
          expect(digits(shown.value)).to.deep.equal([]);
        }),
        run,
      );
    });

    it('dob: the year, no other digit', () => {
      fc.assert(
        fc.property(dobRaw, (dob) => {
          expect(generalized('dob', dob)).to.deep.equal({ value: dob.slice(0, 4), reveal: 'generalized' });
        }),
        run,
      );
    });

    it('phone: + and the country calling code, no digit of the national number', () => {
      fc.assert(
        fc.property(phoneRaw, ({ raw, options }) => {
          const normalized = normalize('phone', raw, options);
          const { value } = generalized('phone', normalized);
          expect(value).to.match(/^\+\d{1,3}$/);
          // The calling code is the number's first digits, and nothing of what follows them.
          expect(normalized.startsWith(value!)).to.equal(true);
          expect(['+1', '+33', '+44']).to.include(value);
        }),
        run,
      );
    });

    it('email: the domain, nothing of the local part', () => {
      fc.assert(
        fc.property(emailRaw, ({ normalized }) => {
          const { value } = generalized('email', normalized);
          expect(value).to.equal(normalized.slice(normalized.lastIndexOf('@') + 1));
          expect(value).not.to.include('@');
        }),
        run,
      );
    });

    it('iban: the country code, no digit', () => {
      fc.assert(
        fc.property(ibanNormalized, (iban) => {
          const { value } = generalized('iban', iban);
          expect(value).to.equal(iban.slice(0, 2));
          expect(digits(value!)).to.deep.equal([]);
        }),
        run,
      );
    });

    it('address: words of its last part only, never a digit (postcode, house number), never a one-part address', () => {
      fc.assert(
        fc.property(addressRaw, (raw) => {
          const normalized = normalize('address', raw);
          const { value, reveal } = generalized('address', normalized);
          if (value === null) {
            expect(reveal).to.equal('redacted');
            return;
          }
          expect(digits(value)).to.deep.equal([]);
          // Whole words of the address, all after a separator (so never a one-part address's words).
          const afterFirstSeparator = normalized.slice(normalized.search(/[,\n]/) + 1);
          expect(afterFirstSeparator.length).to.be.below(normalized.length);
          for (const word of value.split(' ')) expect(afterFirstSeparator.split(/[\s,]+/)).to.include(word);
        }),
        run,
      );
    });

    it('ssn, name and text: always redacted (no honest generalisation)', () => {
      for (const type of ['ssn', 'name', 'text'] as const) {
        expect(revealsAnything(type, 'generalized'), type).to.equal(false);
        fc.assert(
          fc.property(validRaw[type], ({ raw, options }) => {
            expect(generalized(type, normalize(type, raw, options))).to.deep.equal({ value: null, reveal: 'redacted' });
          }),
          run,
        );
      }
    });

    for (const type of DATA_TYPES) {
      it(`${type}: never the value itself, and never more digits than the value has`, () => {
        fc.assert(
          fc.property(validRaw[type], ({ raw, options }) => {
            const normalized = normalize(type, raw, options);
            const { value } = generalized(type, normalized);
            if (value === null) return;
            expect(value).not.to.equal(normalized);
            expect(digits(value).length).to.be.at.most(digits(normalized).length);
          }),
          run,
        );
      });
    }
  });
});

describe('properties / token formats (fast-check)', () => {
  it('pan format, every preserve option, PANs of 12–19 digits: same length, digits, preserved parts kept, fails Luhn', () => {
    fc.assert(
      fc.property(panDigits(), fc.constantFrom(...PAN_PRESERVES), (pan, preserve) => {
        const { first, last } = kept(preserve);
        expectDigitsToken(generateToken('pan', preserve, pan), pan, first, last);
      }),
      { numRuns: 1000 },
    );
  });

  it('pan format with an arbitrary (but usable) random source: still well-formed', () => {
    fc.assert(
      fc.property(panDigits(), fc.constantFrom(...PAN_PRESERVES), randomByteStream, (pan, preserve, bytes) => {
        const { first, last } = kept(preserve);
        let token: string;
        try {
          token = generateToken('pan', preserve, pan, byteSource(bytes));
        } catch (err) {
          // A cyclic source can be unable to produce anything but the value; that must be a clean refusal.
          expect((err as Error).message).to.match(/random source/);
          return;
        }
        expectDigitsToken(token, pan, first, last);
      }),
      run,
    );
  });

  it('digits format (pan and ssn), none and last4: same length, digits, last four kept if asked, fails Luhn', () => {
    fc.assert(
      fc.property(fc.oneof(panDigits(), ssnDigits), fc.constantFrom<Preserve>('none', 'last4'), (value, preserve) => {
        expectDigitsToken(generateToken('digits', preserve, value), value, 0, preserve === 'last4' ? 4 : 0);
      }),
      { numRuns: 1000 },
    );
  });

  it('non-preserved positions are not copied from the value (each matches in < 20% of 2,000 tokens)', () => {
    const cases: Array<[TokenFormat, Preserve]> = [
      ...PAN_PRESERVES.map((p): [TokenFormat, Preserve] => ['pan', p]),
      ['digits', 'none'],
      ['digits', 'last4'],
    ];
    fc.assert(
      fc.property(panDigits(), fc.constantFrom(...cases), (pan, [format, preserve]) => {
        const { first, last } = format === 'pan' ? kept(preserve) : { first: 0, last: preserve === 'last4' ? 4 : 0 };
        const matches = new Array<number>(pan.length).fill(0);
        const n = 2000;
        for (let i = 0; i < n; i++) {
          const token = generateToken(format, preserve, pan);
          for (let p = 0; p < pan.length; p++) if (token[p] === pan[p]) matches[p]!++;
        }
        for (let p = 0; p < pan.length; p++) {
          const preserved = p < first || p >= pan.length - last;
          if (preserved) expect(matches[p], `position ${p}`).to.equal(n);
          else expect(matches[p]! / n, `${format}/${preserve} ${pan} position ${p}`).to.be.below(0.2);
        }
      }),
      { numRuns: 12 },
    );
  });

  it('random format: tok_, a time prefix and 24 random base62 characters, with any usable random source', () => {
    fc.assert(
      fc.property(fc.option(randomByteStream, { nil: undefined }), fc.string(), (bytes, value) => {
        const token = generateToken('random', 'none', value, bytes ? byteSource(bytes) : undefined);
        expect(token).to.match(/^tok_[0-9A-Za-z]{30}$/);
      }),
      run,
    );
  });

  it('uuid format: an RFC 4122 version 4 UUID, with any random source', () => {
    fc.assert(
      fc.property(
        fc.option(fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 40 }), { nil: undefined }),
        fc.string(),
        (bytes, value) => {
          const token = generateToken('uuid', 'none', value, bytes ? byteSource(bytes) : undefined);
          expect(token).to.match(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
        },
      ),
      run,
    );
  });

  it("email format: 20 base32 characters at token.invalid, or at the value's domain only with preserve=domain", () => {
    fc.assert(
      fc.property(emailRaw, fc.constantFrom<Preserve>('none', 'domain'), ({ normalized }, preserve) => {
        const token = generateToken('email', preserve, normalized);
        const domain = normalized.slice(normalized.lastIndexOf('@') + 1);
        const [local, tokenDomain] = token.split('@') as [string, string];
        expect(local).to.match(/^[a-z2-7]{20}$/);
        expect(tokenDomain).to.equal(preserve === 'domain' ? domain : 'token.invalid');
        expect(token).not.to.equal(normalized);
      }),
      { numRuns: 1000 },
    );
  });

  it('every format and preserve option that checkFormat allows gives a token for every valid value of the type', () => {
    const tokenString = TypeCompiler.Compile(TokenString);
    const allowed: Array<[DataType, TokenFormat, Preserve]> = [];
    for (const type of DATA_TYPES) {
      for (const format of TOKEN_FORMATS) {
        for (const preserve of PRESERVE_OPTIONS) {
          try {
            checkFormat(type, format, preserve);
            allowed.push([type, format, preserve]);
          } catch (err) {
            expect(err).to.be.instanceOf(DomainValidationError);
            expect((err as DomainValidationError).code).to.equal('unsupported_format');
            // What checkFormat refuses, generateToken refuses too (or cannot apply to the value).
          }
        }
      }
    }
    fc.assert(
      fc.property(
        fc.constantFrom(...allowed).chain(([type, format, preserve]) => validRaw[type].map((v) => ({ type, format, preserve, ...v }))),
        ({ type, format, preserve, raw, options }) => {
          const normalized = normalize(type, raw, options);
          const token = generateToken(format, preserve, normalized);
          expect(token).to.be.a('string').and.not.equal(normalized);
          // Every token must be one the API accepts back (detokenize, GET/DELETE /v1/tokens/:token).
          expect(tokenString.Check(token), `${format}/${preserve} token of ${token.length} characters`).to.equal(true);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('email format with preserve=domain: the token fits the API token limit (128 characters) for every valid address', () => {
    // Long but valid domains (RFC 1035 labels of up to 63 characters; the address stays ≤ 254).
    const longLabel = fc.integer({ min: 20, max: 63 }).map((n) => 'd'.repeat(n));
    const longDomainEmail = fc
      .tuple(fc.array(longLabel, { minLength: 1, maxLength: 3 }), tld)
      .map(([labels, top]) => `jane@${[...labels, top].join('.')}`)
      .filter((email) => email.length <= 254);
    const tokenString = TypeCompiler.Compile(TokenString);
    fc.assert(
      fc.property(
        fc.oneof(
          longDomainEmail,
          emailRaw.map((e) => e.normalized),
        ),
        (raw) => {
          const normalized = normalize('email', raw);
          const token = generateToken('email', 'domain', normalized);
          // A longer token is issued (and stored) but can never be detokenized, read or deleted.
          expect(tokenString.Check(token), `token of ${token.length} characters for ${normalized.length}-character address`).to.equal(true);
        },
      ),
      run,
    );
  });

  it('generateToken refuses preserve options that do not apply to the format', () => {
    fc.assert(
      fc.property(fc.constantFrom(...TOKEN_FORMATS), fc.constantFrom(...PRESERVE_OPTIONS), panDigits(), (format, preserve, pan) => {
        const applies =
          preserve === 'none' ||
          (format === 'pan' && ['last4', 'bin6', 'bin6last4'].includes(preserve)) ||
          (format === 'digits' && preserve === 'last4') ||
          (format === 'email' && preserve === 'domain');
        let error: unknown;
        try {
          generateToken(format, preserve, format === 'email' ? `${pan}@example.com` : pan);
        } catch (err) {
          error = err;
        }
        if (applies) expect(error).to.equal(undefined);
        else expect((error as DomainValidationError).code).to.equal('unsupported_format');
      }),
      run,
    );
  });
});
