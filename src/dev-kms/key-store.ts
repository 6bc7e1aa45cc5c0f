/**
 * Keys, aliases, ciphertext blobs and persistence of the development KMS. DEV/TEST ONLY.
 *
 * Key material sits in process memory and, if a data file is configured, in that file in the
 * clear (mode 0600). That is fine for a local stand-in and unacceptable for anything real.
 *
 * Ciphertext blob (opaque to clients):
 *   'PVK1' | key id (36 bytes ASCII) | material version (uint32 BE) | nonce (12) | GCM tag (16) | ciphertext
 * AES-256-GCM under the key's material of that version, AAD = canonical encryption context.
 */
import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { writeFileAtomic } from '../atomic-write';
import { KmsError, validation } from './errors';

export const DEV_KMS_ACCOUNT_ID = '111122223333';

const MAGIC = Buffer.from('PVK1', 'ascii');
const KEY_ID_LENGTH = 36;
const NONCE_LENGTH = 12;
const TAG_LENGTH = 16;
const HEADER_LENGTH = MAGIC.length + KEY_ID_LENGTH + 4 + NONCE_LENGTH + TAG_LENGTH;
const MATERIAL_LENGTH = 32;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ALIAS_NAME_RE = /^alias\/[a-zA-Z0-9/_-]{1,250}$/;
const FILE_FORMAT_VERSION = 1;

export type EncryptionContext = Record<string, string>;

export interface KeyRecord {
  keyId: string;
  description: string;
  enabled: boolean;
  /** Epoch seconds. */
  creationDate: number;
  rotationEnabled: boolean;
  /** Key material versions, oldest first; the last one encrypts. */
  materials: Buffer[];
}

interface AliasRecord {
  aliasName: string;
  targetKeyId: string;
  /** Epoch seconds. */
  creationDate: number;
}

interface StoreFile {
  version: number;
  keys: { keyId: string; description: string; enabled: boolean; creationDate: number; rotationEnabled: boolean; materials: string[] }[];
  aliases: AliasRecord[];
}

export class KeyStore {
  private readonly keys = new Map<string, KeyRecord>();
  private readonly aliases = new Map<string, AliasRecord>();

  /** @param dataFile JSON file to load from and save to; undefined keeps state in memory only. */
  constructor(
    readonly region: string,
    private readonly dataFile?: string,
  ) {
    if (dataFile !== undefined && existsSync(dataFile)) this.load(dataFile);
  }

  // ------------------------------------------------------------ keys

  createKey(description: string): KeyRecord {
    const key: KeyRecord = {
      keyId: randomUUID(),
      description,
      enabled: true,
      creationDate: Math.floor(Date.now() / 1000),
      rotationEnabled: false,
      materials: [randomBytes(MATERIAL_LENGTH)],
    };
    this.keys.set(key.keyId, key);
    this.save();
    return key;
  }

  listKeys(): KeyRecord[] {
    return [...this.keys.values()];
  }

  arnOf(keyId: string): string {
    return `arn:aws:kms:${this.region}:${DEV_KMS_ACCOUNT_ID}:key/${keyId}`;
  }

  aliasArnOf(aliasName: string): string {
    return `arn:aws:kms:${this.region}:${DEV_KMS_ACCOUNT_ID}:${aliasName}`;
  }

  /** Resolves a key id, key ARN, `alias/name` or alias ARN; NotFoundException when nothing matches. */
  resolve(reference: unknown, field = 'KeyId'): KeyRecord {
    if (typeof reference !== 'string' || reference === '') throw validation(`${field} is required.`);
    if (reference.length > 2048) throw validation(`${field} is too long.`);
    const arnPrefix = `arn:aws:kms:${this.region}:${DEV_KMS_ACCOUNT_ID}:`;
    const local = reference.startsWith(arnPrefix) ? reference.slice(arnPrefix.length) : reference;
    let keyId: string | undefined;
    if (local.startsWith('alias/')) {
      keyId = this.aliases.get(local)?.targetKeyId;
    } else if (local === reference) {
      keyId = reference;
    } else if (local.startsWith('key/')) {
      keyId = local.slice('key/'.length);
    }
    const key = keyId === undefined ? undefined : this.keys.get(keyId);
    if (!key) throw new KmsError('NotFoundException', `Key '${reference}' does not exist`);
    return key;
  }

  setEnabled(key: KeyRecord, enabled: boolean): void {
    key.enabled = enabled;
    this.save();
  }

  setRotation(key: KeyRecord, enabled: boolean): void {
    key.rotationEnabled = enabled;
    this.save();
  }

  /** Adds a new key material version; older versions keep decrypting. */
  rotate(key: KeyRecord): void {
    key.materials.push(randomBytes(MATERIAL_LENGTH));
    this.save();
  }

  // ------------------------------------------------------------ aliases

  createAlias(aliasName: unknown, targetKeyId: unknown): AliasRecord {
    if (typeof aliasName !== 'string' || !ALIAS_NAME_RE.test(aliasName)) {
      throw validation(`AliasName must match ${ALIAS_NAME_RE.source}.`);
    }
    if (aliasName.startsWith('alias/aws/')) {
      throw validation('AliasName must not begin with alias/aws/; that prefix is reserved for AWS managed keys.');
    }
    if (typeof targetKeyId === 'string' && /(^|:)alias\//.test(targetKeyId)) {
      throw validation('TargetKeyId must be a key id or key ARN, not an alias.');
    }
    const key = this.resolve(targetKeyId, 'TargetKeyId');
    if (this.aliases.has(aliasName)) {
      throw new KmsError('AlreadyExistsException', `An alias with the name ${this.aliasArnOf(aliasName)} already exists`);
    }
    const alias: AliasRecord = { aliasName, targetKeyId: key.keyId, creationDate: Math.floor(Date.now() / 1000) };
    this.aliases.set(aliasName, alias);
    this.save();
    return alias;
  }

  listAliases(): AliasRecord[] {
    return [...this.aliases.values()];
  }

  // ------------------------------------------------------------ crypto

  encrypt(key: KeyRecord, plaintext: Buffer, context: EncryptionContext): Buffer {
    requireEnabled(key);
    const version = key.materials.length - 1;
    const nonce = randomBytes(NONCE_LENGTH);
    const cipher = createCipheriv('aes-256-gcm', materialOf(key, version), nonce);
    cipher.setAAD(Buffer.from(canonicalContext(context), 'utf8'));
    const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    const versionBytes = Buffer.alloc(4);
    versionBytes.writeUInt32BE(version);
    return Buffer.concat([MAGIC, Buffer.from(key.keyId, 'ascii'), versionBytes, nonce, cipher.getAuthTag(), ciphertext]);
  }

  /**
   * Decrypts a blob. `expectedKey` (Decrypt's KeyId / ReEncrypt's SourceKeyId) must name the key
   * the blob was made under, else IncorrectKeyException.
   */
  decrypt(blob: Buffer, context: EncryptionContext, expectedKey?: KeyRecord): { key: KeyRecord; plaintext: Buffer } {
    const invalid = (): KmsError =>
      new KmsError('InvalidCiphertextException', 'The ciphertext is invalid or was made with a different encryption context.');
    if (blob.length <= HEADER_LENGTH || !blob.subarray(0, MAGIC.length).equals(MAGIC)) throw invalid();
    let offset = MAGIC.length;
    const keyId = blob.toString('ascii', offset, offset + KEY_ID_LENGTH);
    offset += KEY_ID_LENGTH;
    const version = blob.readUInt32BE(offset);
    offset += 4;
    const nonce = blob.subarray(offset, offset + NONCE_LENGTH);
    offset += NONCE_LENGTH;
    const tag = blob.subarray(offset, offset + TAG_LENGTH);
    offset += TAG_LENGTH;

    const key = this.keys.get(keyId);
    if (!key || version >= key.materials.length) throw invalid();
    if (expectedKey && expectedKey.keyId !== key.keyId) {
      throw new KmsError(
        'IncorrectKeyException',
        'The key ID in the request does not identify the KMS key that was used to encrypt the ciphertext.',
      );
    }
    requireEnabled(key);
    try {
      const decipher = createDecipheriv('aes-256-gcm', materialOf(key, version), nonce);
      decipher.setAAD(Buffer.from(canonicalContext(context), 'utf8'));
      decipher.setAuthTag(tag);
      const plaintext = Buffer.concat([decipher.update(blob.subarray(offset)), decipher.final()]);
      return { key, plaintext };
    } catch {
      throw invalid();
    }
  }

  // ------------------------------------------------------------ persistence

  private save(): void {
    if (this.dataFile === undefined) return;
    const data: StoreFile = {
      version: FILE_FORMAT_VERSION,
      keys: this.listKeys().map((k) => ({ ...k, materials: k.materials.map((m) => m.toString('base64')) })),
      aliases: this.listAliases(),
    };
    mkdirSync(dirname(this.dataFile), { recursive: true, mode: 0o700 });
    writeFileAtomic(this.dataFile, `${JSON.stringify(data, null, 2)}\n`, { mode: 0o600 });
  }

  private load(file: string): void {
    const fail = (why: string): never => {
      throw new Error(`dev-kms: cannot load ${file}: ${why}`);
    };
    let data: StoreFile;
    try {
      data = JSON.parse(readFileSync(file, 'utf8')) as StoreFile;
    } catch (err) {
      return fail((err as Error).message);
    }
    if (data?.version !== FILE_FORMAT_VERSION || !Array.isArray(data.keys) || !Array.isArray(data.aliases)) {
      fail(`expected {version: ${FILE_FORMAT_VERSION}, keys: [], aliases: []}`);
    }
    for (const k of data.keys) {
      const ok =
        typeof k?.keyId === 'string' &&
        UUID_RE.test(k.keyId) &&
        typeof k.description === 'string' &&
        typeof k.enabled === 'boolean' &&
        typeof k.creationDate === 'number' &&
        typeof k.rotationEnabled === 'boolean' &&
        Array.isArray(k.materials) &&
        k.materials.length > 0 &&
        k.materials.every((m) => typeof m === 'string' && Buffer.from(m, 'base64').length === MATERIAL_LENGTH);
      if (!ok) fail(`malformed key entry ${JSON.stringify(k?.keyId)}`);
      this.keys.set(k.keyId, { ...k, materials: k.materials.map((m) => Buffer.from(m, 'base64')) });
    }
    for (const a of data.aliases) {
      if (typeof a?.aliasName !== 'string' || typeof a.targetKeyId !== 'string' || !this.keys.has(a.targetKeyId)) {
        fail(`malformed alias entry ${JSON.stringify(a?.aliasName)}`);
      }
      this.aliases.set(a.aliasName, { aliasName: a.aliasName, targetKeyId: a.targetKeyId, creationDate: Number(a.creationDate) || 0 });
    }
  }
}

/** JSON of the context with keys sorted (built by hand: JSON.stringify reorders integer-like keys). */
function canonicalContext(context: EncryptionContext): string {
  const entries = Object.keys(context)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${JSON.stringify(context[k])}`);
  return `{${entries.join(',')}}`;
}

function requireEnabled(key: KeyRecord): void {
  if (!key.enabled) throw new KmsError('DisabledException', `${key.keyId} is disabled.`);
}

function materialOf(key: KeyRecord, version: number): Buffer {
  const material = key.materials[version];
  if (!material) throw new KmsError('KMSInternalException', `Key material version ${version} is missing.`);
  return material;
}
