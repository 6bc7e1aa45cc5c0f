/**
 * The API v1 contract, defined once: these TypeBox schemas are the TypeScript types, the request
 * validators and the OpenAPI document's schemas.
 */
import { Static, TSchema, Type } from '@sinclair/typebox';
import { DATA_TYPES, PRESERVE_OPTIONS, REVEAL_LEVELS, TOKEN_FORMATS } from '../domain/types';
import { ERROR_CATALOGUE, ITEM_ERROR_CODES } from '../errors';
import { oneOf } from './one-of';

export const MAX_ITEMS = 1000;
export const MAX_VALUE_CHARS = 4096;
export const MAX_TTL_SECONDS = 10 * 365 * 24 * 3600;

const enumOf = <T extends readonly string[]>(values: T, description: string) => oneOf(values, { description });

export const TenantId = Type.String({
  pattern: '^[a-z0-9][a-z0-9_-]{0,63}$',
  description: 'Isolation unit (merchant, billing entity). Lower-case letters, digits, `_` and `-`.',
  examples: ['default'],
});

export const TokenString = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_@.+-]+$' });

const MetadataSchema = Type.Record(
  Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' }),
  Type.Union([Type.String({ maxLength: 256 }), Type.Number(), Type.Boolean(), Type.Null()]),
  { maxProperties: 20, description: 'Non-sensitive labels stored in clear; never put personal data here.' },
);

export const TokenizeItemSchema = Type.Object(
  {
    type: enumOf(DATA_TYPES, 'Data type; decides validation, normalisation and masking.'),
    value: Type.String({ minLength: 1, maxLength: MAX_VALUE_CHARS, description: 'The sensitive value.' }),
    format: Type.Optional(enumOf(TOKEN_FORMATS, 'Token format; defaults per data type.')),
    preserve: Type.Optional(enumOf(PRESERVE_OPTIONS, 'What a format-preserving token keeps of the value.')),
    deterministic: Type.Optional(Type.Boolean({ description: 'Same tenant, type and value always give the same token.' })),
    subject: Type.Optional(
      Type.String({ minLength: 1, maxLength: 128, pattern: '^[\\x21-\\x7e]+$', description: 'Data subject id, for GDPR/CCPA requests.' }),
    ),
    metadata: Type.Optional(MetadataSchema),
    ttlSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_TTL_SECONDS, description: 'The token expires after this.' })),
  },
  { additionalProperties: false },
);

export const TokenizeRequestSchema = Type.Object(
  {
    tenant: Type.Optional(TenantId),
    items: Type.Array(TokenizeItemSchema, { minItems: 1, maxItems: MAX_ITEMS }),
  },
  { additionalProperties: false },
);

export const TokenizeResponseSchema = Type.Object({
  items: Type.Array(Type.Object({ token: Type.String(), type: enumOf(DATA_TYPES, 'Data type.') })),
});

export const DetokenizeRequestSchema = Type.Object(
  {
    tokens: Type.Array(TokenString, { minItems: 1, maxItems: MAX_ITEMS }),
    purpose: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.:-]+$', description: 'Why the values are needed, e.g. `charge`.' })),
    reveal: Type.Optional(enumOf(REVEAL_LEVELS, 'Asked-for reveal level; the policy may lower it. Defaults to the most the policy allows.')),
  },
  { additionalProperties: false },
);

export const DetokenizedItemSchema = Type.Object({
  token: Type.String(),
  type: enumOf(DATA_TYPES, 'Data type.'),
  value: Type.Union([Type.String(), Type.Null()], { description: 'Null when the reveal level is `redacted`.' }),
  reveal: enumOf(REVEAL_LEVELS, 'What the caller was given.'),
});

export const DetokenizeFailedItemSchema = Type.Object({
  token: Type.String(),
  error: Type.Object({ code: enumOf(ITEM_ERROR_CODES, 'Why this token gave no value.') }),
});

export const DetokenizeResponseSchema = Type.Object({
  items: Type.Array(Type.Union([DetokenizedItemSchema, DetokenizeFailedItemSchema])),
});

export const TokenMetadataSchema = Type.Object({
  token: Type.String(),
  type: enumOf(DATA_TYPES, 'Data type.'),
  tenant: Type.String(),
  format: enumOf(TOKEN_FORMATS, 'Token format.'),
  createdAt: Type.String({ format: 'date-time' }),
  expiresAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  keyVersion: Type.Integer(),
  subject: Type.Union([Type.String(), Type.Null()]),
  metadata: Type.Union([MetadataSchema, Type.Null()]),
});

export const AuditQuerySchema = Type.Object(
  {
    after: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$', description: 'Return rows after this sequence number.' })),
    limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$', description: 'At most this many rows (1–1000, default 100).' })),
  },
  { additionalProperties: false },
);

export const AuditRowSchema = Type.Object({
  seq: Type.Integer(),
  ts: Type.String({ format: 'date-time' }),
  requestId: Type.String(),
  principal: Type.String(),
  tenant: Type.Union([Type.String(), Type.Null()]),
  action: Type.String(),
  types: Type.Array(Type.String()),
  tokens: Type.Array(Type.String()),
  purpose: Type.Union([Type.String(), Type.Null()]),
  outcome: enumOf(['allow', 'deny', 'partial'] as const, 'The decision.'),
  reason: Type.Union([Type.String(), Type.Null()]),
  subjects: Type.Array(Type.String(), { description: 'Keyed HMACs of data subject ids.' }),
  keyVersion: Type.Integer(),
  hash: Type.String({ description: 'This row\'s chained HMAC (hex).' }),
});

export const AuditListResponseSchema = Type.Object({
  items: Type.Array(AuditRowSchema),
  next: Type.Union([Type.Integer(), Type.Null()], { description: 'Pass as `after` for the next page; null at the end.' }),
});

export const AuditVerifyResponseSchema = Type.Union([
  Type.Object({ ok: Type.Literal(true), rows: Type.Integer(), headSeq: Type.Integer(), headHash: Type.String() }),
  Type.Object({ ok: Type.Literal(false), rows: Type.Integer(), firstBadSeq: Type.Integer(), reason: Type.String() }),
]);

export const ErrorResponseSchema = Type.Object({
  error: Type.Object({
    code: enumOf(Object.keys(ERROR_CATALOGUE) as (keyof typeof ERROR_CATALOGUE)[], 'Stable error code.'),
    message: Type.String(),
    requestId: Type.String(),
    details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  }),
});

export const HealthSchema = Type.Object({ status: Type.String() });
export const ReadinessSchema = Type.Object({
  status: Type.String(),
  checks: Type.Record(Type.String(), Type.String()),
});

export type TokenizeRequest = Static<typeof TokenizeRequestSchema>;
export type TokenizeItem = Static<typeof TokenizeItemSchema>;
export type TokenizeResponse = Static<typeof TokenizeResponseSchema>;
export type DetokenizeRequest = Static<typeof DetokenizeRequestSchema>;
export type DetokenizeResponse = Static<typeof DetokenizeResponseSchema>;
export type TokenMetadata = Static<typeof TokenMetadataSchema>;
export type AuditListResponse = Static<typeof AuditListResponseSchema>;
export type AuditVerifyResponse = Static<typeof AuditVerifyResponseSchema>;
export type AnySchema = TSchema;
