import type { KeyPurpose } from '../domain/keys';
import { InternalError } from '../errors';
import { KEY_BYTES } from './aead';

/** Binds a wrapped data key to what it is for; a KEK refuses to unwrap under another context. */
export interface EncryptionContext {
  readonly tenant: string;
  readonly purpose: KeyPurpose;
  readonly version: string;
}

export interface WrappedKey {
  /** Which key-encryption key (and version) wrapped it, e.g. `local:v1` or a KMS key ARN. */
  readonly kekId: string;
  readonly blob: Buffer;
}

export interface ProviderDescription {
  readonly kind: string;
  /** The KEK that new wraps use. */
  readonly kekId: string;
}

/**
 * The seam between the vault and whatever holds its key-encryption key (like an Encryption SDK
 * keyring). Public methods check pre- and postconditions; backends implement the protected part.
 */
export abstract class KeyProvider {
  abstract describe(): ProviderDescription;

  async generateDataKey(context: EncryptionContext): Promise<{ plaintext: Buffer; wrapped: WrappedKey }> {
    const result = await this._generateDataKey(context);
    /* Postcondition: a data key is exactly 256 bits. */
    assertKeyLength(result.plaintext);
    return result;
  }

  async wrap(plaintext: Buffer, context: EncryptionContext): Promise<WrappedKey> {
    /* Precondition: only 256-bit data keys are wrapped. */
    assertKeyLength(plaintext);
    return this._wrap(plaintext, context);
  }

  async unwrap(wrapped: WrappedKey, context: EncryptionContext): Promise<Buffer> {
    const plaintext = await this._unwrap(wrapped, context);
    /* Postcondition: an unwrapped data key is exactly 256 bits. */
    assertKeyLength(plaintext);
    return plaintext;
  }

  /**
   * Wraps under this provider's KEK a key that `source` (the provider owning `wrapped.kekId`)
   * wrapped. By default `source` unwraps and this provider wraps; a backend that can move the key
   * without its plaintext leaving the backend (KMS ReEncrypt) overrides `_rewrap`.
   */
  async rewrap(wrapped: WrappedKey, context: EncryptionContext, source: KeyProvider = this): Promise<WrappedKey> {
    return this._rewrap(wrapped, context, source);
  }

  protected async _rewrap(wrapped: WrappedKey, context: EncryptionContext, source: KeyProvider): Promise<WrappedKey> {
    return this.wrap(await source.unwrap(wrapped, context), context);
  }

  /** Whether the KEK can be used right now (for /readyz). */
  abstract healthy(): Promise<boolean>;

  /** Whether a key wrapped under this KEK id is this provider's to unwrap. */
  abstract owns(kekId: string): boolean;

  protected abstract _generateDataKey(context: EncryptionContext): Promise<{ plaintext: Buffer; wrapped: WrappedKey }>;
  protected abstract _wrap(plaintext: Buffer, context: EncryptionContext): Promise<WrappedKey>;
  protected abstract _unwrap(wrapped: WrappedKey, context: EncryptionContext): Promise<Buffer>;
}

/** The KEK could not be used (missing, wrong, unreachable). Maps to 503 key_unavailable. */
export class KeyUnavailableError extends InternalError {
  constructor(message: string, publicMessage?: string, code: 'key_unavailable' | 'kms_unavailable' = 'key_unavailable') {
    super(code, message, publicMessage);
    this.name = 'KeyUnavailableError';
  }
}

function assertKeyLength(key: Buffer): void {
  if (key.length !== KEY_BYTES) throw new KeyUnavailableError(`data key has ${key.length} bytes, expected ${KEY_BYTES}`);
}
