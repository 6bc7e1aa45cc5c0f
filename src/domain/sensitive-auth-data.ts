/**
 * PCI DSS forbids storing sensitive authentication data after authorisation: card verification
 * codes (CVV2/CVC2/CID), PINs and PIN blocks, and full magnetic-stripe track data. A vault that
 * accepted them into a free-text field or metadata would be storing them, so they are refused
 * wherever they appear: as a data type, a field name, or a value shaped like track data.
 */
const SAD_NAME =
  /^(cvv2?|cvc2?|cvn2?|cid|csc|cav2|card_?verification(_?(code|value))?|security_?code|pin|pin_?block|track_?[12]?|track_?data|magstripe|mag_?stripe)$/i;

/** Track 1 (`%B<PAN>^NAME^YYMM…`) and track 2 (`;<PAN>=YYMM…`) shapes. */
const TRACK_DATA = /%?B\d{12,19}\^[^^]{2,26}\^\d{4}|;?\d{12,19}=\d{4}\d*/;

/**
 * Describes the first sensitive authentication data in a request body, or undefined. The
 * description names only what matched a known name, never other keys or values of the body,
 * which could themselves be personal data.
 */
export function findSensitiveAuthData(body: unknown, depth = 0): string | undefined {
  if (depth > 64) return undefined;
  if (typeof body === 'string') return TRACK_DATA.test(body) ? 'a value looks like magnetic-stripe track data' : undefined;
  if (Array.isArray(body)) {
    for (const element of body) {
      const found = findSensitiveAuthData(element, depth + 1);
      if (found) return found;
    }
    return undefined;
  }
  if (body && typeof body === 'object') {
    for (const [key, value] of Object.entries(body)) {
      if (SAD_NAME.test(key)) return `"${key}" is a sensitive authentication data field`;
      if (key === 'type' && typeof value === 'string' && SAD_NAME.test(value)) return `type "${value}" is sensitive authentication data`;
      const found = findSensitiveAuthData(value, depth + 1);
      if (found) return found;
    }
  }
  return undefined;
}
