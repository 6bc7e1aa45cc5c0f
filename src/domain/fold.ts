/**
 * Folding text before matching it against sensitive shapes, so that a card number or a field name
 * cannot slip through written in another form: Unicode compatibility forms (full-width digits and
 * letters, ligatures) become their plain forms (NFKC), invisible characters (zero-width spaces and
 * joiners, soft hyphens, other default-ignorable code points) are dropped, digits of any script
 * become ASCII digits, and letters are lower-cased.
 */
const INVISIBLE = /[\p{Cf}\p{Default_Ignorable_Code_Point}]/gu;
const NON_ASCII_DIGIT = /[^\P{Nd}0-9]/gu;
const DECIMAL_DIGIT = /\p{Nd}/u;

const NON_ASCII = /[\u0080-\uffff]/;

/** NFKC, without invisible characters, ASCII digits; case is kept (field names need it to split words). */
export function foldKeepingCase(text: string): string {
  if (!NON_ASCII.test(text)) return text; // ASCII is its own fold, and by far the common case
  return text.normalize('NFKC').replace(INVISIBLE, '').replace(NON_ASCII_DIGIT, asciiDigit);
}

function fold(text: string): string {
  return foldKeepingCase(text).toLowerCase();
}

/**
 * Unicode puts the decimal digits of each script in runs of ten code points, zero first, so a
 * digit's value is its distance from the start of its run, modulo ten.
 */
function asciiDigit(digit: string): string {
  let start = digit.codePointAt(0)!;
  while (DECIMAL_DIGIT.test(String.fromCodePoint(start - 1))) start--;
  return String((digit.codePointAt(0)! - start) % 10);
}

/** How many decimal digits, of any script, the text holds (a cheap bound before folding). */
export function countDigits(text: string): number {
  let count = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code >= 48 && code <= 57) count++;
    else if (code >= 0xd800 && code <= 0xdbff) {
      // Digits outside the Basic Multilingual Plane (mathematical bold, Osmanya...) are surrogate pairs.
      if (DECIMAL_DIGIT.test(text.slice(i, i + 2))) count++;
      i++;
    } else if (code > 127 && DECIMAL_DIGIT.test(text[i])) count++;
  }
  return count;
}

/** Separators people put inside a number: spaces, dots, dashes of any kind, underscores. */
const DIGIT_SEPARATORS = /(?<=\d)[\s._\p{Pd}]+(?=\d)/gu;

/** Folded text with the separators between digits removed, so `4111.1111 1111-1111` reads as one run. */
export function foldDigitRuns(text: string): string {
  return fold(text).replace(DIGIT_SEPARATORS, '');
}
