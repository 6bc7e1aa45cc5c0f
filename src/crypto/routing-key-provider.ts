import { EncryptionContext, KeyProvider, KeyUnavailableError, ProviderDescription, WrappedKey } from './key-provider';

/**
 * One primary KEK for new wraps, plus every KEK that may still hold older wrapped keys: unwrap
 * goes to whichever provider owns the key's KEK id. This is how a vault moves from the local
 * master key to KMS: KMS becomes primary, then a rewrap moves every data key over.
 */
export class RoutingKeyProvider extends KeyProvider {
  private readonly providers: KeyProvider[];

  constructor(
    private current: KeyProvider,
    others: KeyProvider[] = [],
  ) {
    super();
    this.providers = [current, ...others];
  }

  get primary(): KeyProvider {
    return this.current;
  }

  /** Makes a provider the target of new wraps; it stays able to unwrap what it wrapped. */
  setPrimary(provider: KeyProvider): void {
    if (!this.providers.includes(provider)) this.providers.unshift(provider);
    this.current = provider;
  }

  providerFor(kekId: string): KeyProvider {
    const owner = this.providers.find((p) => p.owns(kekId));
    if (!owner) throw new KeyUnavailableError(`no configured key provider can unwrap keys wrapped by ${kekId}`);
    return owner;
  }

  describe(): ProviderDescription {
    return this.current.describe();
  }

  healthy(): Promise<boolean> {
    return this.current.healthy();
  }

  owns(kekId: string): boolean {
    return this.providers.some((p) => p.owns(kekId));
  }

  /** Moves a wrapped key under the primary KEK, from whichever provider owns its KEK now. */
  protected override _rewrap(wrapped: WrappedKey, context: EncryptionContext): Promise<WrappedKey> {
    return this.current.rewrap(wrapped, context, this.providerFor(wrapped.kekId));
  }

  protected _generateDataKey(context: EncryptionContext) {
    return this.current.generateDataKey(context);
  }

  protected _wrap(plaintext: Buffer, context: EncryptionContext): Promise<WrappedKey> {
    return this.current.wrap(plaintext, context);
  }

  protected _unwrap(wrapped: WrappedKey, context: EncryptionContext): Promise<Buffer> {
    return this.providerFor(wrapped.kekId).unwrap(wrapped, context);
  }
}
