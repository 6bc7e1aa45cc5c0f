import type { TokenizeItem } from '../contract/schemas';
import { countDigits, foldDigitRuns } from '../domain/fold';
import { describeSadFinding, findSensitiveAuthData } from '../domain/sensitive-auth-data';
import { findLoneSurrogate } from '../domain/well-formed';
import { ERROR_CATALOGUE, VaultError } from '../errors';

/**
 * Checks on what callers send that hold whoever calls: the HTTP layer runs them on every body, and
 * the use cases run them again on what they are given, so no other entry point skips them.
 */

/** Refuses sensitive authentication data anywhere in `input`, naming where but never what. */
export function refuseSensitiveAuthData(input: unknown): void {
  const found = findSensitiveAuthData(input);
  if (!found) return;
  const index = found.path[0] === 'items' && typeof found.path[1] === 'number' ? { index: found.path[1] } : undefined;
  throw new VaultError(
    'sensitive_authentication_data',
    `Refused: ${describeSadFinding(found)}. ${ERROR_CATALOGUE.sensitive_authentication_data.message}`,
    index,
  );
}

/**
 * Metadata is stored in clear, so it must not be able to hold a card number (12 to 19 digits).
 * Any 12 digits in a row are refused — after folding full-width and other Unicode digits, dropping
 * invisible characters and joining digits split by spaces, dots, dashes or underscores — rather
 * than only runs that pass Luhn: a card number followed or preceded by other digits fails Luhn as a
 * whole, and a rule that does not depend on a checksum refuses the same labels every time.
 */
const MAX_DIGITS_IN_A_ROW = 11;
const TOO_MANY_DIGITS = new RegExp(`\\d{${MAX_DIGITS_IN_A_ROW + 1},}`);

export function refuseCardNumbersInMetadata(item: TokenizeItem, index: number): void {
  for (const [key, value] of Object.entries(item.metadata ?? {})) {
    if ([key, String(value)].some((text) => countDigits(text) > MAX_DIGITS_IN_A_ROW && TOO_MANY_DIGITS.test(foldDigitRuns(text)))) {
      throw new VaultError(
        'invalid_request',
        `items[${index}].metadata: metadata is stored in clear and must not hold card numbers (${MAX_DIGITS_IN_A_ROW + 1} or more digits in a row).`,
        { index },
      );
    }
  }
}

/** Subject and metadata must be well-formed Unicode (values are checked by their data type). */
export function refuseLoneSurrogates(item: TokenizeItem, index: number): void {
  const found = findLoneSurrogate({ subject: item.subject, metadata: item.metadata });
  if (!found) return;
  throw new VaultError('invalid_request', `items[${index}].${found[0]}: must be well-formed Unicode (it holds a lone UTF-16 surrogate).`, {
    index,
  });
}
