import {
  DecryptCommand,
  DescribeKeyCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  KMSClient,
  ReEncryptCommand,
} from '@aws-sdk/client-kms';
import { IntegrityError } from './aead';
import { EncryptionContext, KeyProvider, KeyUnavailableError, ProviderDescription, WrappedKey } from './key-provider';

interface AwsKmsSettings {
  /** Key id, key ARN, alias (`alias/name`) or alias ARN. */
  keyId: string;
  /** Other keys (same forms) whose wrapped data keys may be unwrapped; `keyId` always may. */
  allowedKeyIds?: readonly string[];
  region?: string;
  /** Endpoint override (a VPC endpoint, or the dev KMS for tests and local runs). */
  endpoint?: string;
  /** Per-attempt timeout. */
  timeoutMs?: number;
  /** Attempts per call, with the SDK's exponential backoff between them (throttling included). */
  maxAttempts?: number;
}

/**
 * KMS could not be used: unreachable, throttled, denied, disabled or missing key. Maps to 503.
 * A `configuration` failure (no credentials, a key id that does not exist) does not pass with time:
 * its message names the setting to fix instead of asking to try again later.
 */
export class KmsUnavailableError extends KeyUnavailableError {
  constructor(
    readonly reason: string,
    kind: 'transient' | 'configuration' = 'transient',
  ) {
    super(
      kind === 'configuration' ? reason : `AWS KMS is unavailable: ${reason}`,
      kind === 'configuration'
        ? `AWS KMS cannot be used: ${reason}.`
        : `AWS KMS is unavailable (${reason}) and the key needed is not cached; try again later.`,
      'kms_unavailable',
    );
    this.name = 'KmsUnavailableError';
  }
}

const HEALTH_TTL_MS = 5_000;
const KMS_ARN = /^arn:aws[a-z-]*:kms:/;
const KEY_ARN = /^arn:aws[a-z-]*:kms:[^:]+:\d+:key\/[^/]+$/;

/**
 * KEK in AWS KMS: GenerateDataKey for new data keys, Decrypt to unwrap, Encrypt or ReEncrypt to
 * rewrap. Every call carries the encryption context (tenant, purpose, version), so a wrapped key
 * moved to another tenant or purpose does not unwrap. Credentials come from the SDK's default chain.
 */
export class AwsKmsKeyProvider extends KeyProvider {
  private arn: string | undefined;
  /** ARNs of the keys a wrapped data key may name: resolved at start-up, checked before every KMS call that unwraps. */
  private allowedArns = new Set<string>();
  private health: { ok: boolean; at: number } | undefined;

  constructor(
    private readonly keyId: string,
    private readonly client: KMSClient,
    private readonly allowedKeyIds: readonly string[] = [],
    /** Where KMS is, as error messages name it. */
    private readonly endpoint = 'AWS KMS',
  ) {
    super();
  }

  static fromSettings(settings: AwsKmsSettings): AwsKmsKeyProvider {
    const timeout = settings.timeoutMs ?? 2_000;
    const client = new KMSClient({
      region: settings.region,
      endpoint: settings.endpoint,
      maxAttempts: settings.maxAttempts ?? 3,
      requestHandler: { connectionTimeout: timeout, requestTimeout: timeout },
    });
    const endpoint = settings.endpoint ?? `AWS KMS in region ${settings.region ?? process.env.AWS_REGION ?? '(none set)'}`;
    return new AwsKmsKeyProvider(settings.keyId, client, settings.allowedKeyIds, endpoint);
  }

  /**
   * Resolves the key to its ARN and checks it is enabled (DescribeKey); resolves each allowed key
   * (an alias to the ARN it names now) the same way. Call once at start-up.
   */
  async init(): Promise<this> {
    const meta = await this.describeKey(this.keyId);
    if (meta.Enabled === false || (meta.KeyState && meta.KeyState !== 'Enabled')) {
      throw new KmsUnavailableError(`key ${meta.Arn} is ${meta.KeyState ?? 'disabled'}`);
    }
    const allowed = new Set([meta.Arn]);
    for (const id of this.allowedKeyIds) allowed.add(KEY_ARN.test(id) ? id : (await this.describeKey(id)).Arn);
    this.arn = meta.Arn;
    this.allowedArns = allowed;
    return this;
  }

  private async describeKey(keyId: string): Promise<{ Arn: string; Enabled?: boolean; KeyState?: string }> {
    const meta = (await this.call(() => this.client.send(new DescribeKeyCommand({ KeyId: keyId })), keyId)).KeyMetadata;
    if (!meta?.Arn) throw new KmsUnavailableError(`key ${keyId} has no ARN`);
    return { ...meta, Arn: meta.Arn };
  }

  describe(): ProviderDescription {
    return { kind: 'aws-kms', kekId: this.requireArn() };
  }

  /**
   * Every KMS key id is this provider's to judge: one outside the allow-list, whatever its account
   * or region, is refused as a tampered key record rather than routed elsewhere.
   */
  owns(kekId: string): boolean {
    return KMS_ARN.test(kekId);
  }

  async healthy(): Promise<boolean> {
    const now = Date.now();
    if (this.health && now - this.health.at < HEALTH_TTL_MS) return this.health.ok;
    const ok = await this.client.send(new DescribeKeyCommand({ KeyId: this.requireArn() })).then(
      (out) => out.KeyMetadata?.KeyState === 'Enabled',
      () => false,
    );
    this.health = { ok, at: now };
    return ok;
  }

  /** Moves a KMS-wrapped key under this provider's key without the plaintext leaving KMS. */
  async reEncrypt(wrapped: WrappedKey, context: EncryptionContext): Promise<WrappedKey> {
    this.requireAllowed(wrapped.kekId);
    const ctx = toKmsContext(context);
    const out = await this.call(() =>
      this.client.send(
        new ReEncryptCommand({
          CiphertextBlob: wrapped.blob,
          SourceKeyId: wrapped.kekId,
          SourceEncryptionContext: ctx,
          DestinationKeyId: this.requireArn(),
          DestinationEncryptionContext: ctx,
        }),
      ),
    );
    return { kekId: out.KeyId ?? this.requireArn(), blob: Buffer.from(out.CiphertextBlob!) };
  }

  /** KMS to KMS: ReEncrypt, so the data key's plaintext never leaves KMS. */
  protected override _rewrap(wrapped: WrappedKey, context: EncryptionContext, source: KeyProvider): Promise<WrappedKey> {
    return this.owns(wrapped.kekId) ? this.reEncrypt(wrapped, context) : super._rewrap(wrapped, context, source);
  }

  protected async _generateDataKey(context: EncryptionContext) {
    const out = await this.call(() =>
      this.client.send(
        new GenerateDataKeyCommand({ KeyId: this.requireArn(), KeySpec: 'AES_256', EncryptionContext: toKmsContext(context) }),
      ),
    );
    return {
      plaintext: Buffer.from(out.Plaintext!),
      wrapped: { kekId: out.KeyId ?? this.requireArn(), blob: Buffer.from(out.CiphertextBlob!) },
    };
  }

  protected async _wrap(plaintext: Buffer, context: EncryptionContext): Promise<WrappedKey> {
    const out = await this.call(() =>
      this.client.send(new EncryptCommand({ KeyId: this.requireArn(), Plaintext: plaintext, EncryptionContext: toKmsContext(context) })),
    );
    return { kekId: out.KeyId ?? this.requireArn(), blob: Buffer.from(out.CiphertextBlob!) };
  }

  protected async _unwrap(wrapped: WrappedKey, context: EncryptionContext): Promise<Buffer> {
    // Checked here, not by KMS alone: whoever can write the database may also hold another key of the account.
    this.requireAllowed(wrapped.kekId);
    // KeyId makes KMS refuse a blob made under any other key than the one the record names.
    const out = await this.call(() =>
      this.client.send(
        new DecryptCommand({ CiphertextBlob: wrapped.blob, KeyId: wrapped.kekId, EncryptionContext: toKmsContext(context) }),
      ),
    );
    return Buffer.from(out.Plaintext!);
  }

  /** A key record naming a KMS key outside keyId and allowedKeyIds was planted or tampered with. */
  private requireAllowed(kekId: string): void {
    this.requireArn();
    if (!this.allowedArns.has(kekId)) {
      throw new IntegrityError(`the key record names KMS key ${kekId}, which is not keyProvider.kms.keyId or in allowedKeyIds`);
    }
  }

  private requireArn(): string {
    if (!this.arn) throw new KmsUnavailableError('the KMS key was not resolved at start-up');
    return this.arn;
  }

  /** Runs one SDK call, translating its failures into errors that carry no raw stack to callers. */
  private async call<T>(send: () => Promise<T>, keyId?: string): Promise<T> {
    try {
      const result = await send();
      this.health = { ok: true, at: Date.now() };
      return result;
    } catch (err) {
      const translated = translateKmsError(err, this.endpoint, keyId);
      if (translated instanceof KmsUnavailableError) this.health = { ok: false, at: Date.now() };
      throw translated;
    }
  }
}

function toKmsContext(context: EncryptionContext): Record<string, string> {
  return { tenant: context.tenant, purpose: context.purpose, version: context.version };
}

/**
 * KMS errors → IntegrityError (the wrapped key or its context is wrong) or KmsUnavailableError,
 * naming the cause: the setting to check, or the endpoint that could not be reached.
 */
function translateKmsError(err: unknown, endpoint: string, keyId?: string): Error {
  const { name = '', code, message = '' } = err as { name?: string; code?: string; message?: string };
  switch (name) {
    case 'InvalidCiphertextException':
    case 'IncorrectKeyException':
      return new IntegrityError('KMS refused the wrapped key or its encryption context');
    case 'AccessDeniedException':
    case 'UnrecognizedClientException':
    case 'InvalidSignatureException':
      return new KmsUnavailableError('access denied to the key (check the credentials and key policy)');
    case 'NotFoundException':
      return new KmsUnavailableError(
        `KMS key/alias not found: check keyProvider.kms.keyId${keyId ? ` and allowedKeyIds (${keyId} does not exist)` : ''}`,
        'configuration',
      );
    case 'CredentialsProviderError':
      return new KmsUnavailableError(
        'no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or run with an instance or task role)',
        'configuration',
      );
    case 'DisabledException':
    case 'KMSInvalidStateException':
      return new KmsUnavailableError('key is disabled or pending deletion');
    case 'ThrottlingException':
      return new KmsUnavailableError('throttled by KMS after retries');
    default:
      if (/region is missing/i.test(message))
        return new KmsUnavailableError('no AWS region set (keyProvider.kms.region or AWS_REGION)', 'configuration');
      return new KmsUnavailableError(`unreachable at ${endpoint} (${code ?? (name || 'network error')})`);
  }
}
