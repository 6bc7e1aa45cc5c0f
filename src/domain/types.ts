import { VaultError } from '../errors';

export const DATA_TYPES = ['pan', 'ssn', 'email', 'phone', 'name', 'dob', 'address', 'iban', 'text'] as const;
export type DataType = (typeof DATA_TYPES)[number];

export const TOKEN_FORMATS = ['random', 'uuid', 'pan', 'digits', 'email'] as const;
export type TokenFormat = (typeof TOKEN_FORMATS)[number];

/** Which parts of the value a format-preserving token keeps. `domain` applies to `email` tokens. */
export const PRESERVE_OPTIONS = ['none', 'last4', 'bin6', 'bin6last4', 'domain'] as const;
export type Preserve = (typeof PRESERVE_OPTIONS)[number];

/**
 * What a caller may see of a value, most revealing first: the one ordering of the levels. A grant
 * at a level allows it and every later one; a caller may ask for any of those.
 */
export const REVEAL_LEVELS = ['plain', 'masked', 'generalized', 'redacted'] as const;
export type Reveal = (typeof REVEAL_LEVELS)[number];

/** How much a level reveals: `redacted` 0, each earlier level of REVEAL_LEVELS one more. */
export function revealRank(level: Reveal): number {
  return REVEAL_LEVELS.length - 1 - REVEAL_LEVELS.indexOf(level);
}

/** Thrown by pure domain code; the message never contains the value. */
export class DomainValidationError extends VaultError {
  declare readonly code: 'invalid_value' | 'unsupported_format';

  constructor(code: 'invalid_value' | 'unsupported_format', message: string) {
    super(code, message);
    this.name = 'DomainValidationError';
  }
}

/** Source of randomness, injectable so token formats can be tested deterministically. */
export type RandomBytes = (size: number) => Buffer;

/** Purposes one request may name, and a subject's consented set may hold (each is read on every detokenize). */
export const MAX_PURPOSES = 32;
