import { luhnValid } from './data-types';
import { countDigits, foldDigitRuns, foldKeepingCase } from './fold';

/**
 * PCI DSS forbids storing sensitive authentication data after authorisation: card verification
 * codes (CVV2/CVC2/CID), PINs and PIN blocks, and full magnetic-stripe track data (or its EMV
 * chip equivalent). A vault that accepted them into a free-text field or metadata would be
 * storing them, so they are refused wherever they appear: as a data type, a field name, or a value
 * shaped like track data.
 *
 * Names are matched by meaning, not spelling: a name is folded (see fold.ts), split into words
 * (`cardCVV`, `card.cvv`, `CVC2`, `pin_code` → card cvv / cvc 2 / pin code) and the words are
 * looked up. Words that merely contain a short code (`pinned`, `spinner`, `incident`) are not.
 */
type SadKind = 'card verification code' | 'PIN' | 'track data';

const DESCRIPTION: Record<SadKind, string> = {
  'card verification code': 'a card verification code',
  PIN: 'a PIN',
  'track data': 'magnetic-stripe track data',
};

interface SadFinding {
  kind: SadKind;
  /** Where it was found, as JSON path segments of the submitted body (keys are the caller's). */
  path: (string | number)[];
}

/** Letter sequences no ordinary word contains: a word holding one is about a verification code. */
const CODE_STEMS = ['cvv', 'cvc', 'cvn'];
/** Whole words that are verification-code names. */
const CODE_WORDS = new Set(['cid', 'cav', 'csc', 'cvd', 'ccv', 'securitycode', 'cardcode', 'verificationvalue', 'cardverification']);
/** Adjacent word pairs that name a verification code (`card_security_code`, Authorize.Net's `cardCode`). */
const CODE_PAIRS = new Set([
  'security code',
  'security number',
  'sec code',
  'card code',
  'card verification',
  'verification value',
  'cv 2', // Opayo/Sage Pay's CV2
]);
const PIN_WORDS = new Set(['pin', 'pinblock', 'pincode', 'pinnumber', 'pinno', 'pindata']);
const TRACK_WORDS = new Set(['trackdata', 'magstripe', 'magneticstripe']);
const TRACK_PAIRS = new Set(['track 1', 'track 2', 'track data', 'mag stripe', 'magnetic stripe']);

/** Splits a name into lower-case words at punctuation, camelCase humps and letter/digit edges. */
function nameWords(name: string): string[] {
  return foldKeepingCase(name)
    .replace(/(\p{Ll}|\d)(\p{Lu})/gu, '$1 $2')
    .replace(/(\p{Lu})(\p{Lu}\p{Ll})/gu, '$1 $2')
    .replace(/(\p{L})(\d)/gu, '$1 $2')
    .replace(/(\d)(\p{L})/gu, '$1 $2')
    .toLowerCase()
    .split(/[^\p{L}\p{N}]+/u)
    .filter((word) => word.length > 0);
}

/**
 * Names repeat from request to request (`type`, `value`, metadata keys): each is judged once. Only
 * short names are remembered, and only so many, so callers cannot make the memory grow.
 */
const judgedNames = new Map<string, SadKind | null>();
const MAX_JUDGED_NAMES = 10_000;
const MAX_JUDGED_NAME_LENGTH = 64;

/** What sensitive authentication data a field (or data type) name denotes, if any. */
function sadNameKind(name: string): SadKind | undefined {
  if (name.length > MAX_JUDGED_NAME_LENGTH) return judgeName(name);
  let kind = judgedNames.get(name);
  if (kind === undefined) {
    if (judgedNames.size >= MAX_JUDGED_NAMES) judgedNames.clear();
    kind = judgeName(name) ?? null;
    judgedNames.set(name, kind);
  }
  return kind ?? undefined;
}

function judgeName(name: string): SadKind | undefined {
  const words = nameWords(name);
  const pairs = words.slice(1).map((word, i) => `${words[i]} ${word}`);
  if (words.some((w) => CODE_STEMS.some((stem) => w.includes(stem)) || CODE_WORDS.has(w)) || pairs.some((p) => CODE_PAIRS.has(p))) {
    return 'card verification code';
  }
  if (words.some((w) => PIN_WORDS.has(w))) return 'PIN';
  if (words.some((w) => TRACK_WORDS.has(w)) || pairs.some((p) => TRACK_PAIRS.has(p)) || words.join(' ') === 'track') {
    return 'track data';
  }
  return undefined;
}

/**
 * Track 1 (`%B<PAN>^NAME^YYMM…`), track 2 (`;<PAN>=YYMM…`) and EMV track-2 equivalent data
 * (`<PAN>D<YYMM>…`), with or without sentinels, in folded (lower-case) text. Track 2 must carry a
 * PAN that passes Luhn, which keeps ordinary `digits=digits` text out. In chip data the PAN may
 * come after EMV tag 57 and its length byte, in hex digits that run on into it (`57 13 <PAN>D…`).
 */
const TRACK_1 = /b?(?<!\d)\d{12,19}\^[^^]{2,26}\^(?:\d{4}|\^)/;
const TRACK_2 = /(\d{12,})\s*[=d]\s*\d{4}/g;

function looksLikeTrackData(text: string): boolean {
  if (countDigits(text) < 12) return false; // every shape holds a PAN of 12 digits or more
  const folded = foldDigitRuns(text);
  if (TRACK_1.test(folded)) return true;
  for (const [, digits] of folded.matchAll(TRACK_2)) if (panCandidates(digits).some(luhnValid)) return true;
  return false;
}

/** The run itself, and what follows each `57` + length byte in it (EMV tag 57). */
function panCandidates(digits: string): string[] {
  const candidates = [digits];
  for (let at = digits.indexOf('57'); at >= 0; at = digits.indexOf('57', at + 1)) candidates.push(digits.slice(at + 4));
  return candidates.filter((c) => c.length >= 12 && c.length <= 19);
}

/**
 * The first sensitive authentication data in a request body (or any part of one), or undefined.
 * A field whose name denotes it is allowed only with a value that cannot carry it — `true`,
 * `false` or `null` — so flags such as `cvv_checked: true` stay possible.
 */
export function findSensitiveAuthData(body: unknown, path: (string | number)[] = []): SadFinding | undefined {
  if (path.length > 64) return undefined;
  if (typeof body === 'string') return looksLikeTrackData(body) ? { kind: 'track data', path } : undefined;
  if (Array.isArray(body)) {
    for (const [index, element] of body.entries()) {
      const found = findSensitiveAuthData(element, [...path, index]);
      if (found) return found;
    }
    return undefined;
  }
  if (body && typeof body === 'object') {
    for (const [key, value] of Object.entries(body)) {
      const kind = sadNameKind(key);
      if (kind && !(typeof value === 'boolean' || value === null)) return { kind, path: [...path, key] };
      if (key === 'type' && typeof value === 'string') {
        const typeKind = sadNameKind(value);
        if (typeKind) return { kind: typeKind, path: [...path, key] };
      }
      const found = findSensitiveAuthData(value, [...path, key]);
      if (found) return found;
    }
  }
  return undefined;
}

/** Field names of the API that may be echoed; everything below `metadata` is named by the caller. */
const ECHOABLE_FIELDS = new Set(['items', 'tokens', 'value', 'type', 'subject', 'metadata', 'tenant', 'format', 'preserve', 'purpose']);

/**
 * Where a finding is, for an error message: array indices and the API's own field names only. A
 * caller's key (a metadata key, an unknown field) could itself be personal data, so the path stops
 * before it: `items[0].metadata`, never the key under it.
 */
export function describeSadFinding(finding: SadFinding): string {
  let where = '';
  for (const segment of finding.path) {
    if (typeof segment === 'number') where += `[${segment}]`;
    else if (ECHOABLE_FIELDS.has(segment)) where += where ? `.${segment}` : segment;
    else break;
    if (segment === 'metadata') break;
  }
  return `${where || 'the request'} holds ${DESCRIPTION[finding.kind]}`;
}
