import crypto from 'node:crypto';
import { expect } from 'chai';
import {
  ADDRESS_MASK_KEEP,
  DATA_TYPE_SPECS,
  display,
  ibanValid,
  isDataType,
  luhnCheckDigit,
  luhnValid,
  normalizeDob,
  revealsAnything,
  type NormalizeOptions,
} from '../../src/domain/data-types';
import { CARD_BRANDS } from '../../src/domain/card-brands';
import { IBAN_LENGTHS } from '../../src/domain/iban-registry';
import { base62, checkFormat, generateToken, randomDigits, timePrefix } from '../../src/domain/token-formats';
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
import { caught } from '../helpers/caught';

// ---------------------------------------------------------------- helpers

function normalize(type: DataType, raw: string, options?: NormalizeOptions): string {
  return DATA_TYPE_SPECS[type].normalize(raw, options);
}

function mask(type: DataType, raw: string, options?: NormalizeOptions): string {
  return DATA_TYPE_SPECS[type].mask(normalize(type, raw, options));
}

/** Asserts the value is rejected and that the message leaks neither the value nor its digits. */
function expectInvalid(type: DataType, raw: string, options?: NormalizeOptions): void {
  const err = caught(() => normalize(type, raw, options));
  expect(err, `${type} ${JSON.stringify(raw)}`).to.be.instanceOf(DomainValidationError);
  const { code, message } = err as DomainValidationError;
  expect(code).to.equal('invalid_value');
  const needles = [raw, raw.trim(), raw.replace(/\D/g, '')].filter((s) => s.length >= 5);
  for (const needle of needles) expect(message, 'message leaks the value').not.to.include(needle);
}

function expectUnsupported(fn: () => unknown): void {
  const err = caught(fn);
  expect(err).to.be.instanceOf(DomainValidationError);
  expect((err as DomainValidationError).code).to.equal('unsupported_format');
}

/** Deterministic random source: SHA-256 in counter mode over a seed. */
function seededRandom(seed: string): RandomBytes {
  let counter = 0;
  let pool = Buffer.alloc(0);
  return (size) => {
    while (pool.length < size) {
      const block = crypto.createHash('sha256').update(`${seed}:${counter++}`).digest();
      pool = Buffer.concat([pool, block]);
    }
    const out = pool.subarray(0, size);
    pool = pool.subarray(size);
    return Buffer.from(out);
  };
}

/** Random source that plays back `script` first, then falls back to a seeded source. */
function scriptedRandom(script: number[], fallbackSeed = 'fallback'): RandomBytes {
  const queue = [...script];
  const fallback = seededRandom(fallbackSeed);
  return (size) => {
    const taken = queue.splice(0, size);
    return Buffer.concat([Buffer.from(taken), fallback(size - taken.length)]);
  };
}

const constantRandom =
  (byte: number): RandomBytes =>
  (size) =>
    Buffer.alloc(size, byte);

/** Each byte value 0..255 exactly once per 256 bytes, in order. */
function cyclicRandom(): RandomBytes {
  let next = 0;
  return (size) => Buffer.from(Array.from({ length: size }, () => next++ % 256));
}

const digitsOf = (s: string) => s.replace(/\D/g, '');

/** An IBAN with correct mod-97 check digits for any country code and BBAN. */
function withCheckDigits(country: string, bban: string): string {
  for (let check = 2; check <= 98; check++) {
    const candidate = `${country}${String(check).padStart(2, '0')}${bban}`;
    if (ibanValid(candidate)) return candidate;
  }
  throw new Error('unreachable: some check digits always fit');
}

// ---------------------------------------------------------------- data types

describe('domain / data types', () => {
  describe('isDataType', () => {
    it('accepts every data type and nothing else', () => {
      for (const type of DATA_TYPES) expect(isDataType(type)).to.equal(true);
      for (const x of ['PAN', 'card', '', 'toString', 'constructor', 1, null, undefined, {}]) {
        expect(isDataType(x), String(x)).to.equal(false);
      }
    });
  });

  describe('shared guards', () => {
    it('rejects empty strings for every type', () => {
      for (const type of DATA_TYPES) expectInvalid(type, '');
    });

    it('rejects strings over 4096 characters for every type', () => {
      for (const type of DATA_TYPES) expectInvalid(type, '4'.repeat(4097));
    });

    it('rejects non-string input', () => {
      for (const type of DATA_TYPES) {
        for (const x of [undefined, null, 4111111111111111, ['a']]) {
          expect(caught(() => normalize(type, x as unknown as string))).to.be.instanceOf(DomainValidationError);
        }
      }
    });

    it('rejects a lone UTF-16 surrogate in every type, and accepts a paired one', () => {
      const samples: Record<DataType, string> = {
        pan: '4111111111111111',
        ssn: '123-45-6789',
        email: 'jane@example.com',
        phone: '+14155552671',
        name: 'Jane Doe',
        dob: '1980-02-29',
        address: '1 Main St, Springfield',
        iban: 'GB82WEST12345698765432',
        text: 'free text',
      };
      for (const type of DATA_TYPES) {
        expectInvalid(type, `${samples[type]}\ud800`);
        expectInvalid(type, `\udfff${samples[type]}`);
      }
      for (const type of ['name', 'address', 'text'] as const) {
        expect(normalize(type, `${samples[type]} \ud83d\ude00`)).to.include('\u{1F600}');
      }
    });

    it('rejects control characters everywhere except \\n and \\t in text and address', () => {
      const samples: Record<DataType, string> = {
        pan: '4111111111111111',
        ssn: '123-45-6789',
        email: 'a@example.com',
        phone: '+14155552671',
        name: 'Jane Doe',
        dob: '1990-01-01',
        address: '1 Main St, Springfield',
        iban: 'GB82WEST12345698765432',
        text: 'hello',
      };
      for (const type of DATA_TYPES) {
        const good = samples[type];
        for (const ctrl of ['\u0000', '\u0007', '\u001b', '\u007f', '\u0085']) {
          expectInvalid(type, good.slice(0, 2) + ctrl + good.slice(2));
        }
        const multiline = type === 'text' || type === 'address';
        for (const ws of ['\n', '\t']) {
          const withWs = `${good.slice(0, 2)}${ws}${good.slice(2)}`;
          if (multiline) expect(() => normalize(type, withWs)).not.to.throw();
          else expectInvalid(type, withWs);
        }
      }
    });
  });

  describe('pan', () => {
    it('normalizes known test card numbers', () => {
      expect(normalize('pan', '4111111111111111')).to.equal('4111111111111111');
      expect(normalize('pan', '4242 4242 4242 4242')).to.equal('4242424242424242');
      expect(normalize('pan', '4242-4242-4242-4242')).to.equal('4242424242424242');
      expect(normalize('pan', '3782 822463 10005')).to.equal('378282246310005');
      expect(normalize('pan', '123456789015')).to.equal('123456789015'); // 12 digits
      expect(normalize('pan', '4111111111111111110')).to.equal('4111111111111111110'); // 19 digits
    });

    it('rejects bad lengths, bad characters and Luhn failures', () => {
      for (const raw of [
        '4111111111111112',
        '4242424242424241',
        '378282246310006',
        '12345678901', // 11 digits
        '41111111111111111111', // 20 digits
        '4111.1111.1111.1111',
        '4111_1111_1111_1111',
        '4111111111111111a',
        '٤١١١١١١١١١١١١١١١', // Arabic-Indic digits
        '-- --',
      ]) {
        expectInvalid('pan', raw);
      }
    });

    it('masks all but the last four digits', () => {
      expect(mask('pan', '4242 4242 4242 4242')).to.equal('************4242');
      expect(mask('pan', '378282246310005')).to.equal('***********0005');
    });

    it('luhnValid', () => {
      expect(luhnValid('4111111111111111')).to.equal(true);
      expect(luhnValid('79927398713')).to.equal(true);
      expect(luhnValid('79927398710')).to.equal(false);
      expect(luhnValid('')).to.equal(false);
      expect(luhnValid('4111 1111 1111 1111')).to.equal(false);
    });

    it('luhnCheckDigit completes any body to a number that passes Luhn, and only that digit does', () => {
      expect(luhnCheckDigit('7992739871')).to.equal('3');
      expect(luhnCheckDigit('411111111111111')).to.equal('1');
      expect(luhnCheckDigit('')).to.equal('0');
      for (let i = 0; i < 200; i++) {
        const body = String(Math.floor(Math.random() * 1e15)).padStart(i % 19, '0');
        const check = luhnCheckDigit(body);
        for (let d = 0; d < 10; d++) expect(luhnValid(body + d), body + d).to.equal(String(d) === check);
      }
      expect(() => luhnCheckDigit('4111 1111')).to.throw(RangeError);
    });
  });

  describe('ssn', () => {
    it('normalizes to nine digits', () => {
      expect(normalize('ssn', '123-45-6789')).to.equal('123456789');
      expect(normalize('ssn', '123 45 6789')).to.equal('123456789');
      expect(normalize('ssn', '001-01-0001')).to.equal('001010001');
      expect(normalize('ssn', '899-99-9999')).to.equal('899999999');
      expect(normalize('ssn', '665-12-3456')).to.equal('665123456');
    });

    it('rejects unassignable and malformed numbers', () => {
      for (const raw of [
        '000-12-3456',
        '666-12-3456',
        '900-12-3456',
        '999-99-9999',
        '123-00-4567',
        '123-45-0000',
        '12345678',
        '1234567890',
        '12a-45-6789',
        '123/45/6789',
      ]) {
        expectInvalid('ssn', raw);
      }
    });

    it('masks all but the last four digits', () => {
      expect(mask('ssn', '123-45-6789')).to.equal('***-**-6789');
    });
  });

  describe('email', () => {
    it('trims, lower-cases the domain and keeps the local part as is', () => {
      expect(normalize('email', '  John.Doe+tag@Example.COM ')).to.equal('John.Doe+tag@example.com');
      expect(normalize('email', 'a@b-c.d-e.co')).to.equal('a@b-c.d-e.co');
      expect(normalize('email', 'Ünïcode@example.org')).to.equal('Ünïcode@example.org');
    });

    it('rejects malformed addresses', () => {
      const label63 = 'a'.repeat(63);
      for (const raw of [
        'john.doe.example.com',
        'john@doe@example.com',
        '@example.com',
        `${'x'.repeat(65)}@example.com`,
        'john doe@example.com',
        'john\u00a0doe@example.com',
        'john@example',
        'john@-example.com',
        'john@example-.com',
        'john@exa_mple.com',
        'john@example..com',
        'john@example.com.',
        'john@.example.com',
        'john@example.c',
        'john@example.c0m',
        'john@exämple.com',
        `john@${'a'.repeat(64)}.com`,
        `${'x'.repeat(64)}@${label63}.${label63}.${label63}.com`, // 64 + 1 + 195 > 254
      ]) {
        expectInvalid('email', raw);
      }
    });

    it('accepts a 254-character address', () => {
      const label = 'a'.repeat(61);
      const raw = `${'x'.repeat(64)}@${label}.${label}.${label}.com`;
      expect(raw.length).to.equal(254);
      expect(normalize('email', raw)).to.equal(raw);
    });

    it('masks the local part after its first character', () => {
      expect(mask('email', 'john@Example.com')).to.equal('j***@example.com');
      expect(mask('email', 'x@example.com')).to.equal('x***@example.com');
    });
  });

  describe('phone', () => {
    it('normalizes international numbers to E.164', () => {
      expect(normalize('phone', '+1 415 555 2671')).to.equal('+14155552671');
      expect(normalize('phone', '+1 (415) 555-2671')).to.equal('+14155552671');
      expect(normalize('phone', '0044 20 7946 0018')).to.equal('+442079460018');
      expect(normalize('phone', '+33 6 12 34 56 78')).to.equal('+33612345678');
    });

    it('accepts national numbers only with a default region', () => {
      expect(normalize('phone', '(415) 555-2671', { phoneRegion: 'US' })).to.equal('+14155552671');
      expect(normalize('phone', '020 7946 0018', { phoneRegion: 'gb' })).to.equal('+442079460018');
      expect(normalize('phone', '+33 6 12 34 56 78', { phoneRegion: 'US' })).to.equal('+33612345678');
      expectInvalid('phone', '(415) 555-2671');
      expectInvalid('phone', '4155552671');
    });

    it('rejects invalid numbers, extensions, text and unknown regions', () => {
      for (const raw of [
        '+1 415 555 267',
        '+1 555 555 5555',
        '+999 1234567',
        '+14155552671 ext 12',
        '+1 415 555 2671 x12',
        'call +14155552671',
        '+1-415-CALL-NOW',
        '++14155552671',
      ]) {
        expectInvalid('phone', raw);
      }
      expectInvalid('phone', '4155552671', { phoneRegion: 'XX' });
      expectInvalid('phone', '4155552671', { phoneRegion: 'USA' });
    });

    it('checks numbers against the numbering plan, not only their length', () => {
      // Each has a length its country allows but lies in no range assigned to any line type.
      for (const raw of ['+49 151 2345678', '+33 7 03 78 38 52', '+34 989 124 242', '+1 345 856 9762', '+81 6 7605 9203 8']) {
        expectInvalid('phone', raw);
      }
      for (const raw of ['+49 1512 3456789', '+33 7 81 23 45 67', '+34 912 345 678', '+1 345 949 1234', '+81 3 1234 5678']) {
        expect(() => normalize('phone', raw), raw).not.to.throw();
      }
    });

    it('masks all digits but the last four', () => {
      expect(mask('phone', '+1 415 555 2671')).to.equal('+*******2671');
    });
  });

  describe('name', () => {
    it('applies NFC, trims and collapses whitespace', () => {
      expect(normalize('name', '  Jane   Doe ')).to.equal('Jane Doe');
      const decomposed = 'Jose\u0301 A\u0301lvarez';
      expect(normalize('name', decomposed)).to.equal('José Álvarez');
      expect(normalize('name', 'Zoë\u00a0Ünal')).to.equal('Zoë Ünal');
      expect(normalize('name', '李小龍')).to.equal('李小龍');
      expect(normalize('name', "O'Brien-Smith Jr.")).to.equal("O'Brien-Smith Jr.");
    });

    it('rejects blank, letterless and too long names', () => {
      expectInvalid('name', '   ');
      expectInvalid('name', '12345 678');
      expectInvalid('name', '-- .. --');
      expectInvalid('name', 'Jane\tDoe');
      expectInvalid('name', 'Jane\nDoe');
      expectInvalid('name', 'a'.repeat(201));
      expect(normalize('name', 'a'.repeat(200))).to.have.length(200);
    });

    it('masks each word after its first character, and one-letter words whole', () => {
      expect(mask('name', 'John Doe')).to.equal('J*** D**');
      expect(mask('name', 'José  Álvarez')).to.equal('J*** Á******');
      expect(mask('name', 'X')).to.equal('*');
      expect(mask('name', 'J R R Tolkien')).to.equal('* * * T******');
    });
  });

  describe('dob', () => {
    const now = new Date('2024-06-15T12:00:00Z');

    it('accepts real calendar dates, including leap days', () => {
      expect(normalizeDob('2000-02-29', now)).to.equal('2000-02-29');
      expect(normalizeDob('2024-02-29', now)).to.equal('2024-02-29');
      expect(normalizeDob('1870-01-01', now)).to.equal('1870-01-01');
      expect(normalizeDob('1999-12-31', now)).to.equal('1999-12-31');
      expect(normalizeDob('2024-06-15', now)).to.equal('2024-06-15'); // born today
      expect(normalize('dob', '1990-01-31')).to.equal('1990-01-31');
    });

    it('rejects impossible dates, bad formats, early years and the future', () => {
      const rejected = (raw: string) => {
        const err = caught(() => normalizeDob(raw, now));
        expect(err, raw).to.be.instanceOf(DomainValidationError);
        expect((err as Error).message).not.to.include(raw);
      };
      for (const raw of [
        '1900-02-29',
        '2023-02-29',
        '2001-04-31',
        '2001-13-01',
        '2001-00-10',
        '2001-01-00',
        '2001-01-32',
        '1869-12-31',
        '0000-01-01',
        '2024-06-16',
        '2999-01-01',
        '2001-1-01',
        '2001/01/01',
        '01-01-2001',
        ' 2001-01-01',
        '2001-01-01T00:00:00Z',
        '２００１-01-01',
      ]) {
        rejected(raw);
      }
      expectInvalid('dob', '3000-01-01');
    });

    it('compares with the UTC date', () => {
      // 23:30 UTC on the 15th: the 16th is still in the future even where it is already the 16th.
      expect(() => normalizeDob('2024-06-16', new Date('2024-06-15T23:30:00Z'))).to.throw(DomainValidationError);
      expect(normalizeDob('2024-06-16', new Date('2024-06-16T00:00:00Z'))).to.equal('2024-06-16');
    });

    it('masks month and day', () => {
      expect(mask('dob', '1990-07-04')).to.equal('1990-**-**');
    });
  });

  describe('address', () => {
    it('trims and collapses each line, drops empty lines', () => {
      const raw = '  1   Main St ,\tApt 4 \r\n\n   Springfield,  IL 62701\n  USA  \n';
      expect(normalize('address', raw)).to.equal('1 Main St , Apt 4\nSpringfield, IL 62701\nUSA');
      expect(normalize('address', 'Rue de l\u2019E\u0301glise 3')).to.equal('Rue de l’Église 3');
    });

    it('rejects blank, symbol-only and too long addresses', () => {
      expectInvalid('address', ' \n\t\n ');
      expectInvalid('address', '-- , --');
      expectInvalid('address', 'x'.repeat(501));
      expect(normalize('address', 'x'.repeat(500))).to.have.length(500);
    });

    it('shows at most a short final word (postcode, country), never a street line', () => {
      expect(mask('address', '1 Main St, Springfield, IL 62701')).to.equal('* **** **, ***********, ** 62701');
      expect(mask('address', '221B Baker Street\nLondon NW1 6XE\nUnited Kingdom')).to.equal(
        '**** ***** ******\n****** *** ***\n****** Kingdom',
      );
      expect(mask('address', '221B Baker Street')).to.equal('**** ***** ******');
      // Nothing to star before the final word: keeping it would show the whole address.
      expect(mask('address', '#, USA')).to.equal('#, ***');
      // No country after the street: the street line must not show, whatever separates it.
      expect(mask('address', 'Springfield, 742 Evergreen Terrace')).to.equal('***********, *** ********* Terrace');
      expect(mask('address', 'Apt 4\n742 Evergreen Terrace')).to.equal('*** *\n*** ********* Terrace');
      expect(mask('address', 'Flat 2, 10 Downing St')).to.equal('**** *, ** ******* St');
      expect(mask('address', 'Evergreen Terrace 742, Springfield')).to.equal('********* ******* ***, ***********');
    });

    it('never shows more than the bounded final word', () => {
      for (const raw of [
        '1 Main St, Springfield',
        'Hauptstraße 5, 10115 Berlin',
        'Springfield, 742 Evergreen Terrace',
        '12 Rue de la Paix, 75002 Paris, France',
        'Unit 3, 99 Long Boulevard Name Without Country',
      ]) {
        const masked = mask('address', raw);
        const shown = masked.replace(/^[^]*?([^*\s,]*)[\s,]*$/u, '$1');
        expect(Array.from(shown).length, `${raw} → ${masked}`).to.be.at.most(ADDRESS_MASK_KEEP);
        expect(masked.slice(0, masked.length - shown.length)).not.to.match(/[\p{L}\p{N}]/u);
      }
    });
  });

  describe('iban', () => {
    it('normalizes valid IBANs', () => {
      expect(normalize('iban', 'GB82WEST12345698765432')).to.equal('GB82WEST12345698765432');
      expect(normalize('iban', 'gb82 west 1234 5698 7654 32')).to.equal('GB82WEST12345698765432');
      expect(normalize('iban', 'DE89 3704 0044 0532 0130 00')).to.equal('DE89370400440532013000');
    });

    it('rejects corrupted and malformed IBANs', () => {
      for (const raw of [
        'GB82WEST12345698765433', // last digit changed
        'GB28WEST12345698765432', // check digits swapped
        'GB82WEST12345698765423', // two digits transposed
        'DE89370400440532013001',
        'DE88370400440532013000',
        'GB82WEST',
        'G182WEST12345698765432',
        'GBX2WEST12345698765432',
        'GB82-WEST-1234-5698-7654-32',
        `GB82${'1'.repeat(31)}`, // 35 chars
      ]) {
        expectInvalid('iban', raw);
      }
    });

    it("refuses an IBAN of another length than its country's, or of a country without IBANs", () => {
      for (const raw of [
        withCheckDigits('GB', 'WEST1234569876543'), // 21 characters; GB IBANs have 22
        withCheckDigits('GB', 'WEST123456987654321'), // 23
        withCheckDigits('DE', '37040044053201300'), // 21; DE has 22
        withCheckDigits('NL', 'ABNA04171643001'), // 19; NL has 18
        withCheckDigits('US', '1234567890123456'), // the US has no IBAN
        withCheckDigits('XX', '1234567890123456'),
      ]) {
        expect(ibanValid(raw), `${raw} has valid check digits`).to.equal(true);
        expectInvalid('iban', raw);
      }
    });

    it('accepts every registry country at its length, and only at it', () => {
      expect(Object.keys(IBAN_LENGTHS)).to.have.length.greaterThan(80);
      for (const [country, length] of Object.entries(IBAN_LENGTHS)) {
        const bban = '1'.repeat(length - 4);
        expect(normalize('iban', withCheckDigits(country, bban)), country).to.have.length(length);
        expectInvalid('iban', withCheckDigits(country, `${bban}1`));
        expectInvalid('iban', withCheckDigits(country, bban.slice(1)));
      }
      for (const example of [
        'NO93 8601 1117 947',
        'BE68 5390 0754 7034',
        'FR14 2004 1010 0505 0001 3M02 606',
        'MT84 MALT 0110 0001 2345 MTLC AST0 01S',
        'LC55 HEMM 0001 0001 0012 0012 0002 3015',
      ]) {
        expect(() => normalize('iban', example), example).not.to.throw();
      }
    });

    it('ibanValid', () => {
      expect(ibanValid('GB82WEST12345698765432')).to.equal(true);
      expect(ibanValid('DE89370400440532013000')).to.equal(true);
      expect(ibanValid('NL91ABNA0417164300')).to.equal(true);
      expect(ibanValid('GB82WEST12345698765433')).to.equal(false);
      expect(ibanValid('gb82west12345698765432')).to.equal(false);
    });

    it('masks all but the country code and last four, keeping the length', () => {
      expect(mask('iban', 'GB82WEST12345698765432')).to.equal('GB****************5432');
    });
  });

  describe('text', () => {
    it('applies NFC and nothing else', () => {
      expect(normalize('text', '  e\u0301 \r\n\tx  ')).to.equal('  é \r\n\tx  ');
      expect(normalize('text', ' ')).to.equal(' ');
    });

    it('enforces the 4096-character limit after NFC', () => {
      expect(normalize('text', 'a'.repeat(4096))).to.have.length(4096);
      expectInvalid('text', 'a'.repeat(4097));
      // U+0958 is a composition exclusion: NFC turns it into two code units.
      expectInvalid('text', '\u0958'.repeat(4000));
    });

    it('masks non-whitespace and caps the mask', () => {
      expect(mask('text', 'hi there')).to.equal('** *****');
      expect(mask('text', 'a\nb')).to.equal('*\n*');
      expect(mask('text', 'the quick brown fox')).to.equal('*** ***** ***** …');
      expect(mask('text', '😀😀')).to.equal('**');
      expect(mask('text', 'a'.repeat(16))).to.equal('*'.repeat(16));
      expect(mask('text', '😀'.repeat(17))).to.equal(`${'*'.repeat(16)}…`);
      expect(mask('text', 'a '.repeat(2048))).to.equal(`${'* '.repeat(8)}…`);
    });
  });

  describe('generalize (the generalized reveal level)', () => {
    const generalized = (type: DataType, raw: string, options?: NormalizeOptions) =>
      display(type, 'generalized', normalize(type, raw, options));
    const value = (type: DataType, raw: string, options?: NormalizeOptions) => generalized(type, raw, options).value;

    it('dob → year, email → domain, phone → country calling code, iban → country code', () => {
      expect(generalized('dob', '1984-07-02')).to.deep.equal({ value: '1984', reveal: 'generalized' });
      expect(value('email', 'Jane.Doe@Example.com')).to.equal('example.com');
      expect(value('phone', '+44 7911 123456')).to.equal('+44');
      expect(value('phone', '+1 415 555 2671')).to.equal('+1');
      expect(value('phone', '(415) 555-2671', { phoneRegion: 'US' })).to.equal('+1');
      expect(value('iban', 'GB82 WEST 1234 5698 7654 32')).to.equal('GB');
    });

    it('pan → its brand from the IIN ranges, redacted when no known range holds it', () => {
      const brands: [string, string][] = [
        ['4111 1111 1111 1111', 'visa'],
        ['5555 5555 5555 4444', 'mastercard'],
        ['2223 0031 2200 3222', 'mastercard'],
        ['3782 822463 10005', 'amex'],
        ['6011 1111 1111 1117', 'discover'],
        ['3530 1113 3330 0000', 'jcb'],
        ['3056 9309 0259 04', 'diners'],
        ['6200 0000 0000 0005', 'unionpay'],
        ['6759 6498 2643 8453', 'maestro'],
        ['2200 0000 0000 0004', 'mir'],
      ];
      for (const [pan, brand] of brands) expect(value('pan', pan), pan).to.equal(brand);
      for (const brand of CARD_BRANDS)
        expect(
          brands.map(([, b]) => b),
          brand,
        ).to.include(brand);
      expect(generalized('pan', '9000 0000 0000 0001')).to.deep.equal({ value: null, reveal: 'redacted' });
    });

    it('address → the words of its last part that hold no digit; redacted with one part or nothing left', () => {
      expect(value('address', '1 Main St\nSpringfield, IL 62701\nUSA')).to.equal('USA');
      expect(value('address', '10 Downing Street, London SW1A 2AA')).to.equal('London');
      expect(value('address', '1 Main St, Springfield, IL 62701')).to.equal('IL');
      expect(value('address', '221B Baker Street, NW1 6XE')).to.equal(null);
      expect(value('address', '221B Baker Street London')).to.equal(null);
    });

    it('ssn, name, text → redacted without opening anything', () => {
      for (const type of ['ssn', 'name', 'text'] as const) expect(revealsAnything(type, 'generalized'), type).to.equal(false);
      expect(generalized('ssn', '123-45-6789')).to.deep.equal({ value: null, reveal: 'redacted' });
      expect(revealsAnything('pan', 'generalized')).to.equal(true);
      expect(revealsAnything('pan', 'redacted')).to.equal(false);
    });
  });
});

// ---------------------------------------------------------------- token formats

describe('domain / token formats', () => {
  describe('checkFormat', () => {
    const opaque: Partial<Record<TokenFormat, Preserve[]>> = { random: ['none'], uuid: ['none'] };
    const expected: Record<DataType, Partial<Record<TokenFormat, Preserve[]>>> = {
      pan: { ...opaque, pan: ['none', 'last4', 'bin6', 'bin6last4'], digits: ['none', 'last4'] },
      ssn: { ...opaque, digits: ['none', 'last4'] },
      email: { ...opaque, email: ['none', 'domain'] },
      phone: opaque,
      name: opaque,
      dob: opaque,
      address: opaque,
      iban: opaque,
      text: opaque,
    };

    it('allows exactly the documented combinations', () => {
      for (const type of DATA_TYPES) {
        for (const format of TOKEN_FORMATS) {
          for (const preserve of PRESERVE_OPTIONS) {
            const allowed = expected[type][format]?.includes(preserve) ?? false;
            const label = `${type}/${format}/${preserve}`;
            if (allowed) expect(() => checkFormat(type, format, preserve), label).not.to.throw();
            else expectUnsupported(() => checkFormat(type, format, preserve));
          }
        }
      }
    });

    it('accepts every default', () => {
      for (const type of DATA_TYPES) {
        const spec = DATA_TYPE_SPECS[type];
        expect(() => checkFormat(type, spec.defaultFormat, spec.defaultPreserve)).not.to.throw();
      }
      expect(DATA_TYPE_SPECS.pan.defaultFormat).to.equal('pan');
      expect(DATA_TYPE_SPECS.pan.defaultPreserve).to.equal('last4');
      expect(DATA_TYPE_SPECS.ssn.defaultFormat).to.equal('random');
    });
  });

  describe('random', () => {
    it('has a time prefix that sorts in creation order, second by second', () => {
      const t0 = Date.UTC(2026, 0, 1);
      expect(timePrefix(t0)).to.have.length(6);
      expect(timePrefix(t0 + 999)).to.equal(timePrefix(t0));
      expect(timePrefix(t0) < timePrefix(t0 + 1000)).to.equal(true);
      expect(timePrefix(t0 + 1000) < timePrefix(t0 + 86_400_000 * 365)).to.equal(true);
      const token = generateToken('random', 'none', 'x', undefined, t0);
      expect(token.slice(4, 10)).to.equal(timePrefix(t0));
    });

    it('is tok_, 6 base62 characters of creation time and 24 random ones, never repeating', () => {
      const seen = new Set<string>();
      for (let i = 0; i < 2000; i++) {
        const token = generateToken('random', 'none', '4111111111111111');
        expect(token).to.match(/^tok_[0-9A-Za-z]{30}$/);
        seen.add(token);
      }
      expect(seen.size).to.equal(2000);
    });
  });

  describe('uuid', () => {
    it('is a lowercase RFC 4122 v4 UUID', () => {
      const shape = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
      for (let i = 0; i < 1000; i++) expect(generateToken('uuid', 'none', 'x')).to.match(shape);
      expect(generateToken('uuid', 'none', 'x', constantRandom(0x00))).to.equal('00000000-0000-4000-8000-000000000000');
      expect(generateToken('uuid', 'none', 'x', constantRandom(0xff))).to.equal('ffffffff-ffff-4fff-bfff-ffffffffffff');
    });
  });

  describe('pan', () => {
    const cases: Array<[string, Preserve]> = [
      ['4111111111111111', 'none'],
      ['4242424242424242', 'last4'],
      ['4111111111111111', 'bin6'],
      ['378282246310005', 'bin6last4'],
      ['123456789015', 'bin6last4'], // 12 digits: only two random positions
      ['4111111111111111110', 'bin6last4'],
    ];

    for (const [pan, preserve] of cases) {
      it(`${pan.length} digits, ${preserve}: same length, keeps what is asked, never passes Luhn`, () => {
        const random = seededRandom(`${pan}/${preserve}`);
        const keepsBin = preserve === 'bin6' || preserve === 'bin6last4';
        const keepsLast4 = preserve === 'last4' || preserve === 'bin6last4';
        for (let i = 0; i < 10_000; i++) {
          const token = generateToken('pan', preserve, pan, random);
          expect(token).to.have.length(pan.length);
          expect(token).to.match(/^\d+$/);
          if (luhnValid(token)) expect.fail(`token ${token} passes Luhn`);
          if (token === pan) expect.fail('token equals the value');
          if (keepsBin && token.slice(0, 6) !== pan.slice(0, 6)) expect.fail('BIN not kept');
          if (keepsLast4 && token.slice(-4) !== pan.slice(-4)) expect.fail('last 4 not kept');
        }
      });
    }

    it('bumps the last random digit when the candidate passes Luhn', () => {
      // The script makes the random digits 4242424242424242, which passes Luhn.
      const script = Array.from(digitsOf('4242424242424242'), Number);
      const token = generateToken('pan', 'none', '4111111111111111', scriptedRandom(script));
      expect(token).to.equal('4242424242424243');
      // With last4 kept the last random digit is the 12th: 4242424242461111 passes Luhn.
      expect(luhnValid('4242424242461111')).to.equal(true);
      const lastScript = Array.from('424242424246', Number);
      const kept = generateToken('pan', 'last4', '4111111111111111', scriptedRandom(lastScript));
      expect(kept).to.equal('4242424242471111');
    });

    it('randomizes the middle digits', () => {
      const middles = new Set<string>();
      for (let i = 0; i < 200; i++) middles.add(generateToken('pan', 'bin6last4', '4111111111111111').slice(6, 12));
      expect(middles.size).to.be.greaterThan(190);
    });

    it('rejects values that do not fit the format', () => {
      expectUnsupported(() => generateToken('pan', 'none', 'abc'));
      expectUnsupported(() => generateToken('pan', 'none', ''));
      expectUnsupported(() => generateToken('pan', 'bin6last4', '4111111111'));
    });
  });

  describe('digits', () => {
    it('keeps the length and optionally the last four', () => {
      const random = seededRandom('ssn');
      for (let i = 0; i < 5000; i++) {
        const none = generateToken('digits', 'none', '123456789', random);
        expect(none).to.match(/^\d{9}$/);
        expect(none).not.to.equal('123456789');
        const last4 = generateToken('digits', 'last4', '123456789', random);
        expect(last4).to.match(/^\d{5}6789$/);
        expect(last4).not.to.equal('123456789');
      }
    });

    it('regenerates when the token equals the value', () => {
      expect(luhnValid('123456789')).to.equal(false);
      const script = [1, 2, 3, 4, 5, /* second attempt */ 9, 9, 9, 9, 9];
      expect(generateToken('digits', 'last4', '123456789', scriptedRandom(script))).to.equal('999996789');
    });

    it('gives up on a random source that cannot produce a different token', () => {
      // All-zero bytes give 00000, which passes Luhn and is bumped to 00001: the value itself.
      const err = caught(() => generateToken('digits', 'none', '00001', constantRandom(0)));
      expect(err).to.be.instanceOf(Error);
      expect((err as Error).message).not.to.include('00001');
    });

    it('rejects values with no room for random digits', () => {
      expectUnsupported(() => generateToken('digits', 'last4', '1234'));
      expectUnsupported(() => generateToken('digits', 'none', '12-34'));
    });
  });

  describe('email', () => {
    it('uses token.invalid unless the domain is preserved', () => {
      for (let i = 0; i < 500; i++) {
        expect(generateToken('email', 'none', 'John@example.com')).to.match(/^[a-z2-7]{20}@token\.invalid$/);
        expect(generateToken('email', 'domain', 'John@example.com')).to.match(/^[a-z2-7]{20}@example\.com$/);
      }
    });
  });

  describe('format and preserve mismatches', () => {
    it('rejects preserve options that do not apply to the format', () => {
      expectUnsupported(() => generateToken('random', 'last4', '4111111111111111'));
      expectUnsupported(() => generateToken('uuid', 'domain', 'a@example.com'));
      expectUnsupported(() => generateToken('pan', 'domain', '4111111111111111'));
      expectUnsupported(() => generateToken('digits', 'bin6', '123456789'));
      expectUnsupported(() => generateToken('email', 'last4', 'a@example.com'));
      expectUnsupported(() => generateToken('nope' as TokenFormat, 'none', 'x'));
    });
  });

  describe('injected randomness', () => {
    it('is deterministic for a given random source', () => {
      const inputs: Array<[TokenFormat, Preserve, string]> = [
        ['random', 'none', 'x'],
        ['uuid', 'none', 'x'],
        ['pan', 'bin6last4', '4111111111111111'],
        ['digits', 'last4', '123456789'],
        ['email', 'domain', 'a@example.com'],
      ];
      const run = (seed: string) => {
        const random = seededRandom(seed);
        return inputs.map(([format, preserve, value]) => generateToken(format, preserve, value, random));
      };
      expect(run('seed-1')).to.deep.equal(run('seed-1'));
      const [a, b] = [run('seed-1'), run('seed-2')];
      for (let i = 0; i < inputs.length; i++) expect(a[i]).not.to.equal(b[i]);
    });
  });

  describe('randomDigits and base62', () => {
    it('skip bytes that would bias the result', () => {
      expect(randomDigits(3, scriptedRandom([250, 255, 7, 249, 10]))).to.equal('790');
      expect(base62(3, scriptedRandom([248, 255, 0, 61, 247]))).to.equal('0zz');
    });

    it('map a uniform byte stream to exactly uniform symbols', () => {
      const digitCounts = new Map<string, number>();
      for (const d of randomDigits(2500, cyclicRandom())) digitCounts.set(d, (digitCounts.get(d) ?? 0) + 1);
      expect([...digitCounts.values()]).to.deep.equal(Array(10).fill(250));

      const charCounts = new Map<string, number>();
      for (const c of base62(62 * 40, cyclicRandom())) charCounts.set(c, (charCounts.get(c) ?? 0) + 1);
      expect(charCounts.size).to.equal(62);
      expect(new Set(charCounts.values())).to.deep.equal(new Set([40]));
    });

    it('randomDigits passes a loose chi-square check over 100k digits', () => {
      const n = 100_000;
      const counts = Array<number>(10).fill(0);
      for (const d of randomDigits(n, crypto.randomBytes)) counts[Number(d)]!++;
      const expectedCount = n / 10;
      const chiSquare = counts.reduce((sum, c) => sum + (c - expectedCount) ** 2 / expectedCount, 0);
      // 9 degrees of freedom: p ≈ 1e-5 at 40. Loose on purpose; the exact bias check is the one above.
      expect(chiSquare).to.be.lessThan(40);
    });

    it('base62 uses the full alphabet', () => {
      expect(new Set(base62(10_000, crypto.randomBytes)).size).to.equal(62);
    });
  });
});
