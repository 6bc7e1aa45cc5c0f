/**
 * KMS operations of the development KMS: one handler per `TrentService.<Operation>`. DEV/TEST ONLY.
 *
 * Handlers take the parsed JSON request and return the JSON response, with field names as in the
 * AWS KMS API (blobs base64, dates epoch seconds). Failures are thrown as KmsError.
 */
import { randomBytes } from 'node:crypto';
import { KmsError, validation } from './errors';
import { DEV_KMS_ACCOUNT_ID, type EncryptionContext, type KeyRecord, type KeyStore } from './key-store';

type Json = Record<string, unknown>;
type Operation = (store: KeyStore, input: Json) => Json;

const ALGORITHM = 'SYMMETRIC_DEFAULT';
const MAX_PLAINTEXT = 4096;
const MAX_CIPHERTEXT = 6144;
const DATA_KEY_SPECS: Record<string, number> = { AES_256: 32, AES_128: 16 };

export const OPERATIONS: Record<string, Operation> = {
  CreateKey(store, input) {
    const description = optionalString(input, 'Description', 8192) ?? '';
    expectOneOf(input, 'KeyUsage', ['ENCRYPT_DECRYPT']);
    expectOneOf(input, 'KeySpec', [ALGORITHM]);
    expectOneOf(input, 'CustomerMasterKeySpec', [ALGORITHM]);
    expectOneOf(input, 'Origin', ['AWS_KMS']);
    return { KeyMetadata: keyMetadata(store, store.createKey(description)) };
  },

  DescribeKey(store, input) {
    return { KeyMetadata: keyMetadata(store, store.resolve(input.KeyId)) };
  },

  ListKeys(store) {
    return { Keys: store.listKeys().map((k) => ({ KeyId: k.keyId, KeyArn: store.arnOf(k.keyId) })), Truncated: false };
  },

  CreateAlias(store, input) {
    store.createAlias(input.AliasName, input.TargetKeyId);
    return {};
  },

  ListAliases(store, input) {
    const only = input.KeyId === undefined ? undefined : store.resolve(input.KeyId).keyId;
    const aliases = store
      .listAliases()
      .filter((a) => only === undefined || a.targetKeyId === only)
      .map((a) => ({
        AliasName: a.aliasName,
        AliasArn: store.aliasArnOf(a.aliasName),
        TargetKeyId: a.targetKeyId,
        CreationDate: a.creationDate,
      }));
    return { Aliases: aliases, Truncated: false };
  },

  Encrypt(store, input) {
    const key = store.resolve(input.KeyId);
    const plaintext = blob(input, 'Plaintext', MAX_PLAINTEXT);
    expectOneOf(input, 'EncryptionAlgorithm', [ALGORITHM]);
    const ciphertext = store.encrypt(key, plaintext, context(input, 'EncryptionContext'));
    return { CiphertextBlob: ciphertext.toString('base64'), KeyId: store.arnOf(key.keyId), EncryptionAlgorithm: ALGORITHM };
  },

  Decrypt(store, input) {
    const ciphertext = blob(input, 'CiphertextBlob', MAX_CIPHERTEXT);
    const expected = input.KeyId === undefined ? undefined : store.resolve(input.KeyId);
    expectOneOf(input, 'EncryptionAlgorithm', [ALGORITHM]);
    const { key, plaintext } = store.decrypt(ciphertext, context(input, 'EncryptionContext'), expected);
    return { Plaintext: plaintext.toString('base64'), KeyId: store.arnOf(key.keyId), EncryptionAlgorithm: ALGORITHM };
  },

  ReEncrypt(store, input) {
    const ciphertext = blob(input, 'CiphertextBlob', MAX_CIPHERTEXT);
    const expected = input.SourceKeyId === undefined ? undefined : store.resolve(input.SourceKeyId, 'SourceKeyId');
    const destination = store.resolve(input.DestinationKeyId, 'DestinationKeyId');
    expectOneOf(input, 'SourceEncryptionAlgorithm', [ALGORITHM]);
    expectOneOf(input, 'DestinationEncryptionAlgorithm', [ALGORITHM]);
    const sourceContext = context(input, 'SourceEncryptionContext');
    const destinationContext = context(input, 'DestinationEncryptionContext');
    const { key: source, plaintext } = store.decrypt(ciphertext, sourceContext, expected);
    const reencrypted = store.encrypt(destination, plaintext, destinationContext);
    plaintext.fill(0);
    return {
      CiphertextBlob: reencrypted.toString('base64'),
      SourceKeyId: store.arnOf(source.keyId),
      KeyId: store.arnOf(destination.keyId),
      SourceEncryptionAlgorithm: ALGORITHM,
      DestinationEncryptionAlgorithm: ALGORITHM,
    };
  },

  GenerateDataKey(store, input) {
    const { key, plaintext, ciphertext } = generateDataKey(store, input);
    return { CiphertextBlob: ciphertext.toString('base64'), Plaintext: plaintext.toString('base64'), KeyId: store.arnOf(key.keyId) };
  },

  GenerateDataKeyWithoutPlaintext(store, input) {
    const { key, plaintext, ciphertext } = generateDataKey(store, input);
    plaintext.fill(0);
    return { CiphertextBlob: ciphertext.toString('base64'), KeyId: store.arnOf(key.keyId) };
  },

  EnableKeyRotation(store, input) {
    store.setRotation(enabledKey(store, input), true);
    return {};
  },

  DisableKeyRotation(store, input) {
    store.setRotation(enabledKey(store, input), false);
    return {};
  },

  GetKeyRotationStatus(store, input) {
    return { KeyRotationEnabled: store.resolve(input.KeyId).rotationEnabled };
  },

  RotateKeyOnDemand(store, input) {
    const key = enabledKey(store, input);
    store.rotate(key);
    return { KeyId: key.keyId };
  },

  EnableKey(store, input) {
    store.setEnabled(store.resolve(input.KeyId), true);
    return {};
  },

  DisableKey(store, input) {
    store.setEnabled(store.resolve(input.KeyId), false);
    return {};
  },
};

function keyMetadata(store: KeyStore, key: KeyRecord): Json {
  return {
    AWSAccountId: DEV_KMS_ACCOUNT_ID,
    KeyId: key.keyId,
    Arn: store.arnOf(key.keyId),
    CreationDate: key.creationDate,
    Enabled: key.enabled,
    Description: key.description,
    KeyUsage: 'ENCRYPT_DECRYPT',
    KeyState: key.enabled ? 'Enabled' : 'Disabled',
    Origin: 'AWS_KMS',
    KeyManager: 'CUSTOMER',
    KeySpec: ALGORITHM,
    CustomerMasterKeySpec: ALGORITHM,
    EncryptionAlgorithms: [ALGORITHM],
    MultiRegion: false,
  };
}

// ---------------------------------------------------------------- input helpers

function generateDataKey(store: KeyStore, input: Json): { key: KeyRecord; plaintext: Buffer; ciphertext: Buffer } {
  const key = store.resolve(input.KeyId);
  const { KeySpec: spec, NumberOfBytes: count } = input;
  let length: number;
  if (spec !== undefined && count !== undefined) {
    throw validation('Specify either KeySpec or NumberOfBytes, not both.');
  } else if (spec !== undefined) {
    if (typeof spec !== 'string' || !(spec in DATA_KEY_SPECS)) {
      throw validation(`KeySpec must be one of ${Object.keys(DATA_KEY_SPECS).join(', ')}.`);
    }
    length = DATA_KEY_SPECS[spec] as number;
  } else if (count !== undefined) {
    if (typeof count !== 'number' || !Number.isInteger(count) || count < 1 || count > 1024) {
      throw validation('NumberOfBytes must be an integer from 1 to 1024.');
    }
    length = count;
  } else {
    throw validation('Specify either KeySpec or NumberOfBytes.');
  }
  const plaintext = randomBytes(length);
  const ciphertext = store.encrypt(key, plaintext, context(input, 'EncryptionContext'));
  return { key, plaintext, ciphertext };
}

function enabledKey(store: KeyStore, input: Json): KeyRecord {
  const key = store.resolve(input.KeyId);
  if (!key.enabled) throw new KmsError('DisabledException', `${key.keyId} is disabled.`);
  return key;
}

function optionalString(input: Json, field: string, maxLength: number): string | undefined {
  const value = input[field];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length > maxLength) {
    throw validation(`${field} must be a string of at most ${maxLength} characters.`);
  }
  return value;
}

function expectOneOf(input: Json, field: string, allowed: string[]): void {
  const value = input[field];
  if (value !== undefined && !allowed.includes(value as string)) {
    throw validation(`${field} '${String(value)}' is not supported; use ${allowed.join(' or ')}.`);
  }
}

function blob(input: Json, field: string, maxBytes: number): Buffer {
  const value = input[field];
  if (value === undefined) throw validation(`${field} is required.`);
  if (typeof value !== 'string' || value.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(value)) {
    throw validation(`${field} must be base64.`);
  }
  const bytes = Buffer.from(value, 'base64');
  if (bytes.length < 1 || bytes.length > maxBytes) {
    throw validation(`${field} must be 1 to ${maxBytes} bytes, got ${bytes.length}.`);
  }
  return bytes;
}

function context(input: Json, field: string): EncryptionContext {
  const value = input[field];
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw validation(`${field} must be a map of strings.`);
  // Null prototype: a key such as `__proto__` is stored and compared like any other, as in KMS.
  const result: EncryptionContext = Object.create(null);
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') throw validation(`${field}['${k}'] must be a string.`);
    result[k] = v;
  }
  return result;
}
