/**
 * Card brands by IIN (issuer identification number) range, the leading digits of a PAN. Only the
 * brand is known here: there is no BIN database in the vault, so no issuer or BIN country.
 */
export const CARD_BRANDS = ['visa', 'mastercard', 'amex', 'discover', 'jcb', 'diners', 'unionpay', 'maestro', 'mir'] as const;
type CardBrand = (typeof CARD_BRANDS)[number];

/** [brand, first prefix, last prefix], both of the same length; the longest matching prefix wins. */
const IIN_RANGES: readonly (readonly [CardBrand, string, string])[] = [
  ['visa', '4', '4'],
  ['mastercard', '51', '55'],
  ['mastercard', '2221', '2720'],
  ['amex', '34', '34'],
  ['amex', '37', '37'],
  ['discover', '6011', '6011'],
  ['discover', '644', '649'],
  ['discover', '65', '65'],
  ['jcb', '3528', '3589'],
  ['diners', '300', '305'],
  ['diners', '3095', '3095'],
  ['diners', '36', '36'],
  ['diners', '38', '39'],
  ['unionpay', '62', '62'],
  ['maestro', '5018', '5018'],
  ['maestro', '5020', '5020'],
  ['maestro', '5038', '5038'],
  ['maestro', '5893', '5893'],
  ['maestro', '6304', '6304'],
  ['maestro', '6759', '6759'],
  ['maestro', '6761', '6763'],
  ['mir', '2200', '2204'],
];

const LONGEST_FIRST = [...IIN_RANGES].sort((a, b) => b[1].length - a[1].length);

/** The brand whose IIN range the PAN's leading digits fall in, or undefined when none is known. */
export function cardBrand(pan: string): CardBrand | undefined {
  for (const [brand, first, last] of LONGEST_FIRST) {
    const prefix = pan.slice(0, first.length);
    // Same-length digit strings compare as their numbers do.
    if (prefix.length === first.length && prefix >= first && prefix <= last) return brand;
  }
  return undefined;
}
