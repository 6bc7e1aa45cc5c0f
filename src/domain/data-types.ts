// The `max` metadata checks a number against the numbering plan (which ranges are mobile, fixed
// line, ...), not only its length as the default `min` metadata does.
import { isSupportedCountry, parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js/max';
import { cardBrand } from './card-brands';
import { IBAN_LENGTHS } from './iban-registry';
import { DATA_TYPES, DomainValidationError, type DataType, type Preserve, type Reveal, type TokenFormat } from './types';
import { hasLoneSurrogate } from './well-formed';

export interface NormalizeOptions {
  /** ISO 3166 alpha-2 default region for national phone numbers, e.g. 'US'. When absent only
   * international numbers (leading `+` or `00`) are accepted. */
  phoneRegion?: string;
}

interface DataTypeSpec {
  readonly type: DataType;
  /** Validates and returns the canonical form stored and fingerprinted. Throws
   * DomainValidationError('invalid_value', msg); msg never includes the value or any part of it. */
  normalize(raw: string, options?: NormalizeOptions): string;
  /** Masked display of a normalized value. */
  mask(normalized: string): string;
  /**
   * Generalised display of a normalized value, for analytics: a coarser fact that is true of it (its
   * year, domain, card brand…), never the part that identifies it. Undefined for a value it cannot
   * generalise; absent for a type with no honest generalisation. Either way the value is redacted instead.
   */
  generalize?(normalized: string): string | undefined;
  readonly defaultFormat: TokenFormat;
  readonly defaultPreserve: Preserve;
  /** Token formats allowed for this type, and for each the preserve options allowed. */
  readonly formats: Partial<Record<TokenFormat, readonly Preserve[]>>;
}

/** Longest raw input accepted by any type, checked before any other work. */
const MAX_RAW_LENGTH = 4096;

const OPAQUE_FORMATS = { random: ['none'], uuid: ['none'] } as const;

const CONTROL_CHARS = /\p{Cc}/u;
const CONTROL_CHARS_EXCEPT_TAB_NEWLINE = /[^\P{Cc}\t\n\r]/u;

function invalid(message: string): never {
  throw new DomainValidationError('invalid_value', message);
}

/** Checks shared by every type. `multiline` types (text, address) may contain \t, \n and \r. */
function guardRaw(type: DataType, raw: unknown, multiline = false): string {
  if (typeof raw !== 'string') invalid(`${type} value must be a string`);
  if (raw.length === 0) invalid(`${type} value must not be empty`);
  if (raw.length > MAX_RAW_LENGTH) invalid(`${type} value must be at most ${MAX_RAW_LENGTH} characters`);
  const forbidden = multiline ? CONTROL_CHARS_EXCEPT_TAB_NEWLINE : CONTROL_CHARS;
  if (forbidden.test(raw)) invalid(`${type} value must not contain control characters`);
  if (hasLoneSurrogate(raw)) invalid(`${type} value must be well-formed Unicode (it holds a lone UTF-16 surrogate)`);
  return raw;
}

function stripSpacesAndDashes(s: string): string {
  return s.replace(/[ -]/g, '');
}

function collapseWhitespace(s: string): string {
  return s.trim().replace(/\s+/gu, ' ');
}

function stars(n: number): string {
  return '*'.repeat(Math.max(0, n));
}

/** Keeps the last `keep` characters, replaces the others with `*`. */
function maskAllButLast(s: string, keep: number): string {
  return stars(s.length - keep) + s.slice(-keep);
}

// ---------------------------------------------------------------- checksums

export function luhnValid(digits: string): boolean {
  return /^\d+$/.test(digits) && luhnSum(digits, false) % 10 === 0;
}

/** The digit that makes `body + digit` pass Luhn. */
export function luhnCheckDigit(body: string): string {
  if (!/^\d*$/.test(body)) throw new RangeError('a Luhn body is digits only');
  return String((10 - (luhnSum(body, true) % 10)) % 10);
}

/** Sum of the digits, every second one from the right doubled (digit sum); the rightmost too when it is not a check digit. */
function luhnSum(digits: string, doubleRightmost: boolean): number {
  const doubled = doubleRightmost ? 0 : 1;
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === doubled) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum;
}

/** ISO 13616 mod-97 check of an upper-case IBAN without spaces. */
export function ibanValid(normalized: string): boolean {
  if (!/^[A-Z]{2}[0-9]{2}[A-Z0-9]+$/.test(normalized)) return false;
  const rearranged = normalized.slice(4) + normalized.slice(0, 4);
  let remainder = 0;
  for (const ch of rearranged) {
    // Letters expand to two digits (A=10 … Z=35); folding digit by digit keeps numbers small.
    const value = ch >= 'A' ? String(ch.charCodeAt(0) - 55) : ch;
    for (const digit of value) remainder = (remainder * 10 + Number(digit)) % 97;
  }
  return remainder === 1;
}

// ---------------------------------------------------------------- pan

function normalizePan(raw: string): string {
  const digits = stripSpacesAndDashes(guardRaw('pan', raw));
  if (!/^\d{12,19}$/.test(digits)) invalid('pan must be 12 to 19 digits');
  if (!luhnValid(digits)) invalid('pan fails the Luhn check');
  return digits;
}

/** The card brand from the IIN ranges; never a digit. */
function generalizePan(normalized: string): string | undefined {
  return cardBrand(normalized);
}

// ---------------------------------------------------------------- ssn

function normalizeSsn(raw: string): string {
  const digits = stripSpacesAndDashes(guardRaw('ssn', raw));
  if (!/^\d{9}$/.test(digits)) invalid('ssn must be 9 digits');
  const area = digits.slice(0, 3);
  if (area === '000' || area === '666' || area[0] === '9') invalid('ssn area number is not assignable');
  if (digits.slice(3, 5) === '00') invalid('ssn group number must not be 00');
  if (digits.slice(5) === '0000') invalid('ssn serial number must not be 0000');
  return digits;
}

function maskSsn(normalized: string): string {
  return `***-**-${normalized.slice(-4)}`;
}

// ---------------------------------------------------------------- email

const DOMAIN_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

function normalizeEmail(raw: string): string {
  const value = guardRaw('email', raw).trim();
  const parts = value.split('@');
  if (parts.length !== 2) invalid('email must contain exactly one @');
  const [local, rawDomain] = parts as [string, string];
  if (local.length < 1 || local.length > 64) invalid('email local part must be 1 to 64 characters');
  if (/\s/u.test(local)) invalid('email local part must not contain whitespace');
  const domain = rawDomain.toLowerCase();
  const labels = domain.split('.');
  if (labels.length < 2) invalid('email domain must have at least two labels');
  if (!labels.every((label) => DOMAIN_LABEL.test(label))) invalid('email domain has an invalid label');
  if (!/^[a-z]{2,}$/.test(labels[labels.length - 1]!)) invalid('email top-level domain must be letters only');
  const normalized = `${local}@${domain}`;
  if (normalized.length > 254) invalid('email must be at most 254 characters');
  return normalized;
}

function maskEmail(normalized: string): string {
  const at = normalized.lastIndexOf('@');
  const firstChar = Array.from(normalized)[0] ?? '';
  return `${firstChar}***@${normalized.slice(at + 1)}`;
}

function generalizeEmail(normalized: string): string {
  return normalized.slice(normalized.lastIndexOf('@') + 1);
}

// ---------------------------------------------------------------- phone

function phoneRegion(options?: NormalizeOptions): CountryCode | undefined {
  if (options?.phoneRegion === undefined) return undefined;
  const region = options.phoneRegion.toUpperCase();
  if (!isSupportedCountry(region)) invalid('phone region is not a supported ISO 3166 alpha-2 code');
  return region;
}

function normalizePhone(raw: string, options?: NormalizeOptions): string {
  let value = guardRaw('phone', raw).trim();
  // Only formatting characters: this also rules out extensions, which E.164 cannot carry.
  if (!/^\+?[0-9 ()./-]+$/.test(value)) invalid('phone must contain only digits and formatting characters');
  if (value.startsWith('00')) value = `+${value.slice(2)}`;
  const defaultCountry = phoneRegion(options);
  if (!value.startsWith('+') && defaultCountry === undefined) {
    invalid('phone must be international (+ or 00) when no default region is given');
  }
  const parsed = parsePhoneNumberFromString(value, { defaultCountry, extract: false });
  if (parsed === undefined || !parsed.isValid()) invalid('phone is not a valid number');
  return parsed.number;
}

function maskPhone(normalized: string): string {
  return `+${maskAllButLast(normalized.slice(1), 4)}`;
}

/** The country calling code (`+44`); a normalized number is E.164, so it always carries one. */
function generalizePhone(normalized: string): string | undefined {
  const code = parsePhoneNumberFromString(normalized)?.countryCallingCode;
  return code === undefined ? undefined : `+${code}`;
}

// ---------------------------------------------------------------- name

function normalizeName(raw: string): string {
  const value = collapseWhitespace(guardRaw('name', raw).normalize('NFC'));
  if (value.length < 1 || value.length > 200) invalid('name must be 1 to 200 characters');
  if (!/\p{L}/u.test(value)) invalid('name must contain a letter');
  return value;
}

/** Initials only; a one-letter word is an initial already, so it is starred too. */
function maskName(normalized: string): string {
  return normalized
    .split(' ')
    .map((word) => {
      const chars = Array.from(word);
      return chars.length > 1 ? chars[0] + stars(chars.length - 1) : stars(chars.length);
    })
    .join(' ');
}

// ---------------------------------------------------------------- dob

const MIN_DOB_YEAR = 1870;

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/** Normalizes a date of birth; `now` is injectable for tests. */
export function normalizeDob(raw: string, now: Date = new Date()): string {
  const value = guardRaw('dob', raw);
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  if (!match) invalid('dob must be formatted YYYY-MM-DD');
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) invalid('dob is not a calendar date');
  if (year < MIN_DOB_YEAR) invalid(`dob year must be ${MIN_DOB_YEAR} or later`);
  // Same-width ISO dates compare correctly as strings.
  if (value > now.toISOString().slice(0, 10)) invalid('dob must not be in the future');
  return value;
}

function maskDob(normalized: string): string {
  return `${normalized.slice(0, 4)}-**-**`;
}

function generalizeDob(normalized: string): string {
  return normalized.slice(0, 4);
}

// ---------------------------------------------------------------- address

function normalizeAddress(raw: string): string {
  const value = guardRaw('address', raw, true)
    .normalize('NFC')
    .split(/\r\n|\r|\n/)
    .map(collapseWhitespace)
    .filter((line) => line.length > 0)
    .join('\n');
  if (value.length < 1 || value.length > 500) invalid('address must be 1 to 500 characters');
  if (!/[\p{L}\p{N}]/u.test(value)) invalid('address must contain a letter or digit');
  return value;
}

/** The longest final word of an address a mask shows: a postcode (`62701-1234`) or a country (`USA`). */
export const ADDRESS_MASK_KEEP = 10;

/**
 * Shows only the final word of an address (split at spaces, commas and line breaks), when the
 * address has more than one part (comma- or line-separated) with letters or digits before that
 * word, and the word is at most ADDRESS_MASK_KEEP characters; letters and digits elsewhere are starred, punctuation and layout
 * kept. A street line is never shown whole, wherever it stands.
 */
function maskAddress(normalized: string): string {
  const starLettersAndDigits = (s: string) => s.replace(/[\p{L}\p{M}\p{N}]/gu, '*');
  const last = /[^\s,]+(?=[\s,]*$)/u.exec(normalized);
  const before = last === null ? '' : normalized.slice(0, last.index);
  // Keeping the word must leave something starred before it, or the mask would show it all.
  const severalParts = /[,\n]/.test(before) && /[\p{L}\p{N}]/u.test(before);
  if (!last || !severalParts || Array.from(last[0]).length > ADDRESS_MASK_KEEP) return starLettersAndDigits(normalized);
  return starLettersAndDigits(normalized.slice(0, last.index)) + normalized.slice(last.index);
}

/**
 * The last comma- or line-separated part without its words that hold a digit: a country, region or
 * town, never a postcode or house number. Only for addresses of several parts (one part would be
 * the street line); undefined when nothing is left.
 */
function generalizeAddress(normalized: string): string | undefined {
  const parts = normalized.split(/[,\n]/).filter((part) => /[\p{L}\p{N}]/u.test(part));
  if (parts.length < 2) return undefined;
  const words = parts[parts.length - 1]!.split(/\s+/).filter((word) => /\p{L}/u.test(word) && !/\p{N}/u.test(word));
  return words.length ? words.join(' ') : undefined;
}

// ---------------------------------------------------------------- iban

function normalizeIban(raw: string): string {
  const value = guardRaw('iban', raw).replace(/ /g, '').toUpperCase();
  if (value.length < 15 || value.length > 34) invalid('iban must be 15 to 34 characters');
  if (!/^[A-Z]{2}[0-9]{2}[A-Z0-9]+$/.test(value)) invalid('iban must be a country code, check digits and letters or digits');
  const length = Object.hasOwn(IBAN_LENGTHS, value.slice(0, 2)) ? IBAN_LENGTHS[value.slice(0, 2)] : undefined;
  if (length === undefined) invalid('iban country code is not in the IBAN registry');
  if (value.length !== length) invalid("iban does not have its country's length");
  if (!ibanValid(value)) invalid('iban fails the mod-97 check');
  return value;
}

function maskIban(normalized: string): string {
  return normalized.slice(0, 2) + maskAllButLast(normalized.slice(2), 4);
}

/** The country code; the rest of an IBAN names the bank and the account. */
function generalizeIban(normalized: string): string {
  return normalized.slice(0, 2);
}

// ---------------------------------------------------------------- text

const TEXT_MASK_MAX = 16;

function normalizeText(raw: string): string {
  const value = guardRaw('text', raw, true).normalize('NFC');
  if (value.length > MAX_RAW_LENGTH) invalid(`text must be at most ${MAX_RAW_LENGTH} characters`);
  return value;
}

/** Only the shown prefix is looked at: masking a 4,096-character text costs no more than a short one. */
function maskText(normalized: string): string {
  let masked = '';
  let shown = 0;
  for (const ch of normalized) {
    if (shown === TEXT_MASK_MAX) return `${masked}…`;
    masked += /\s/u.test(ch) ? ch : '*';
    shown++;
  }
  return masked;
}

// ---------------------------------------------------------------- catalogue

function opaqueSpec(type: DataType, normalize: DataTypeSpec['normalize'], mask: DataTypeSpec['mask']): DataTypeSpec {
  return { type, normalize, mask, defaultFormat: 'random', defaultPreserve: 'none', formats: OPAQUE_FORMATS };
}

export const DATA_TYPE_SPECS: Record<DataType, DataTypeSpec> = {
  pan: {
    type: 'pan',
    normalize: normalizePan,
    mask: (normalized) => maskAllButLast(normalized, 4),
    generalize: generalizePan,
    defaultFormat: 'pan',
    defaultPreserve: 'last4',
    formats: { ...OPAQUE_FORMATS, pan: ['none', 'last4', 'bin6', 'bin6last4'], digits: ['none', 'last4'] },
  },
  ssn: {
    ...opaqueSpec('ssn', normalizeSsn, maskSsn),
    formats: { ...OPAQUE_FORMATS, digits: ['none', 'last4'] },
  },
  email: {
    ...opaqueSpec('email', normalizeEmail, maskEmail),
    generalize: generalizeEmail,
    formats: { ...OPAQUE_FORMATS, email: ['none', 'domain'] },
  },
  phone: { ...opaqueSpec('phone', normalizePhone, maskPhone), generalize: generalizePhone },
  name: opaqueSpec('name', normalizeName, maskName),
  dob: { ...opaqueSpec('dob', (raw) => normalizeDob(raw), maskDob), generalize: generalizeDob },
  address: { ...opaqueSpec('address', normalizeAddress, maskAddress), generalize: generalizeAddress },
  iban: { ...opaqueSpec('iban', normalizeIban, maskIban), generalize: generalizeIban },
  text: opaqueSpec('text', normalizeText, maskText),
};

export function isDataType(x: unknown): x is DataType {
  return typeof x === 'string' && (DATA_TYPES as readonly string[]).includes(x);
}

/** Whether a value of the type shows anything at the level: nothing when redacted, or generalised without a generaliser. */
export function revealsAnything(type: DataType, level: Reveal): boolean {
  return level !== 'redacted' && (level !== 'generalized' || DATA_TYPE_SPECS[type].generalize !== undefined);
}

/** A normalized value as shown at the level, and the level actually given (`redacted` when it cannot be generalised). */
export function display(type: DataType, level: Reveal, normalized: string): { value: string | null; reveal: Reveal } {
  const value = shownAt(DATA_TYPE_SPECS[type], level, normalized);
  return value === undefined ? { value: null, reveal: 'redacted' } : { value, reveal: level };
}

function shownAt(spec: DataTypeSpec, level: Reveal, normalized: string): string | undefined {
  switch (level) {
    case 'plain':
      return normalized;
    case 'masked':
      return spec.mask(normalized);
    case 'generalized':
      return spec.generalize?.(normalized);
    case 'redacted':
      return undefined;
  }
}
