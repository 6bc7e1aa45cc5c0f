/**
 * The API v1 contract, defined once: these TypeBox schemas are the TypeScript types, the request
 * validators and the OpenAPI document's schemas.
 */
import { Static, Type } from '@sinclair/typebox';
import { DATA_KEY_STATES, KEY_PURPOSES } from '../domain/keys';
import { DATA_TYPES, MAX_PURPOSES, PRESERVE_OPTIONS, REVEAL_LEVELS, TOKEN_FORMATS } from '../domain/types';
import { ERROR_CATALOGUE, ITEM_ERROR_CODES, ITEM_ERROR_REASONS } from '../errors';
import { oneOf } from './one-of';

export const MAX_ITEMS = 1000;
export const MAX_VALUE_CHARS = 4096;
export const MAX_TTL_SECONDS = 10 * 365 * 24 * 3600;

const enumOf = <T extends readonly string[]>(values: T, description: string) => oneOf(values, { description });

export const TenantId = Type.String({
  pattern: '^(?!.*\\d{12})[a-z0-9][a-z0-9_-]{0,63}$',
  description: 'Isolation unit (merchant, billing entity). Lower-case letters, digits, `_` and `-`; no run of 12 digits.',
  examples: ['default'],
});

/** Long enough for an email-format token that keeps a 253-character domain. */
export const MAX_TOKEN_LENGTH = 320;
export const TokenString = Type.String({ minLength: 1, maxLength: MAX_TOKEN_LENGTH, pattern: '^[A-Za-z0-9_@.+-]+$' });

// additionalProperties: false makes a key outside the pattern an error (a patterned Record alone would not check it).
const MetadataSchema = Type.Record(
  Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_.-]{0,63}$' }),
  Type.Union([Type.String({ maxLength: 256 }), Type.Number(), Type.Boolean(), Type.Null()]),
  { maxProperties: 20, additionalProperties: false, description: 'Non-sensitive labels stored in clear; never put personal data here.' },
);

/** A stated purpose: no run of 12 digits (purposes are written to audit rows, so must not be able to carry a card number). */
const PURPOSE_PATTERN = '^(?!.*\\d{12})[A-Za-z0-9_.:-]+$';

export const Purpose = Type.String({ minLength: 1, maxLength: 64, pattern: PURPOSE_PATTERN, description: 'A purpose, e.g. `charge`.' });
const PurposeList = (description: string) => Type.Array(Purpose, { minItems: 1, maxItems: MAX_PURPOSES, uniqueItems: true, description });

export const SubjectId = Type.String({
  minLength: 1,
  maxLength: 128,
  pattern: '^[\\x21-\\x7e]+$',
  description: 'Data subject id, for GDPR/CCPA requests.',
});

export const TokenizeItemSchema = Type.Object(
  {
    type: enumOf(DATA_TYPES, 'Data type; decides validation, normalisation and masking.'),
    value: Type.String({ minLength: 1, maxLength: MAX_VALUE_CHARS, description: 'The sensitive value.' }),
    format: Type.Optional(enumOf(TOKEN_FORMATS, 'Token format; defaults per data type.')),
    preserve: Type.Optional(enumOf(PRESERVE_OPTIONS, 'What a format-preserving token keeps of the value.')),
    deterministic: Type.Optional(Type.Boolean({ description: 'Same tenant, type and value always give the same token.' })),
    subject: Type.Optional(SubjectId),
    purposes: Type.Optional(PurposeList("Purposes the subject consented to, added to the subject's consented set (needs `subject`).")),
    metadata: Type.Optional(MetadataSchema),
    ttlSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_TTL_SECONDS, description: 'The token expires after this.' })),
  },
  { additionalProperties: false },
);

export const TokenizeRequestSchema = Type.Object(
  {
    tenant: Type.Optional(TenantId),
    items: Type.Array(TokenizeItemSchema, { minItems: 1, maxItems: MAX_ITEMS }),
    purposes: Type.Optional(PurposeList('Consented purposes for the subject of every item (each needs `subject`).')),
  },
  { additionalProperties: false },
);

export const TokenizeResponseSchema = Type.Object({
  items: Type.Array(Type.Object({ token: Type.String(), type: enumOf(DATA_TYPES, 'Data type.') })),
});

export const DetokenizeRequestSchema = Type.Object(
  {
    tokens: Type.Array(TokenString, { minItems: 1, maxItems: MAX_ITEMS }),
    purpose: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 64,
        pattern: PURPOSE_PATTERN,
        description:
          "Why the values are needed, e.g. `charge`. Refused for a subject's records unless the subject consented to it (when consent is recorded).",
      }),
    ),
    reveal: Type.Optional(
      enumOf(REVEAL_LEVELS, 'Asked-for reveal level; the policy may lower it. Defaults to the most the policy allows.'),
    ),
    tenant: Type.Optional(
      Type.String({
        pattern: TenantId.pattern,
        description:
          'Look the tokens up in this tenant only (token spaces are per tenant); needed when a token exists in several of yours.',
      }),
    ),
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
  error: Type.Object({
    code: enumOf(ITEM_ERROR_CODES, 'Why this token gave no value.'),
    reason: Type.Optional(
      enumOf(ITEM_ERROR_REASONS, "What refused it, when a `forbidden` was the subject's consent rather than the policy."),
    ),
  }),
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

export const TokenQuerySchema = Type.Object(
  {
    tenant: Type.Optional(
      Type.String({
        pattern: TenantId.pattern,
        description: 'The tenant whose token this is; needed when the token exists in several of yours.',
      }),
    ),
  },
  { additionalProperties: false },
);

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
  subjects: Type.Array(Type.String(), {
    description: 'Data subjects by handle (random, hex); rows written before handles existed name keyed HMACs of subject ids.',
  }),
  keyVersion: Type.Integer(),
  hash: Type.String({ description: "This row's chained HMAC (hex)." }),
});

export const AuditListResponseSchema = Type.Object({
  items: Type.Array(AuditRowSchema),
  next: Type.Union([Type.Integer(), Type.Null()], { description: 'Pass as `after` for the next page; null at the end.' }),
});

const AuditVerifyRunFields = {
  archivedThrough: Type.Integer({
    description: 'The last row exported to an archive and pruned (0: none); `rows` counts the rows after it.',
  }),
  verifiedFrom: Type.Integer({ description: 'The first row this run checked; earlier rows were verified by an earlier run.' }),
  checkpoint: enumOf(
    ['none', 'used', 'valid', 'rejected'] as const,
    'The stored verification checkpoint: absent, used as the starting point, intact, or rejected (its MAC failed; the whole chain was verified).',
  ),
};

export const AuditVerifyResponseSchema = Type.Union([
  Type.Object({ ok: Type.Literal(true), rows: Type.Integer(), headSeq: Type.Integer(), headHash: Type.String(), ...AuditVerifyRunFields }),
  Type.Object({
    ok: Type.Literal(false),
    rows: Type.Integer(),
    firstBadSeq: Type.Integer(),
    reason: Type.String(),
    ...AuditVerifyRunFields,
  }),
  Type.Object(
    { ok: Type.Boolean(), scope: Type.Literal('tenants') },
    { description: "For a caller scoped to some tenants: whether the whole chain is intact, nothing about other tenants' rows." },
  ),
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

// ---- Policy report (transparency: who may do what; no personal data in it) ----

export const PolicyReportQuerySchema = Type.Object(
  {
    format: Type.Optional(enumOf(['json', 'markdown'] as const, 'JSON (the default) or Markdown, a record of processing a DPO can read.')),
  },
  { additionalProperties: false },
);

export const PolicyPermissionSchema = Type.Object({
  action: Type.String({ description: 'A policy action.' }),
  type: Type.Union([enumOf(DATA_TYPES, 'Data type.'), Type.Null()], {
    description: 'Null for an action on no value (audit, keys, policy).',
  }),
  reveal: Type.Union([enumOf(REVEAL_LEVELS, 'The most revealing level allowed; the caller may ask for less.'), Type.Null()], {
    description: 'Null for an action that shows no value (all but detokenize).',
  }),
  purposes: Type.Union([Type.Array(Type.String()), Type.Null()], {
    description: 'Allowed only when the request states one of these purposes; null: with any purpose or none.',
  }),
});

export const PolicyReportSchema = Type.Object({
  policyVersion: Type.Integer(),
  generatedAt: Type.String({ format: 'date-time' }),
  revealLevels: Type.Array(enumOf(REVEAL_LEVELS, 'Reveal level.'), { description: 'Most revealing first.' }),
  roles: Type.Array(Type.Object({ role: Type.String(), permissions: Type.Array(PolicyPermissionSchema) })),
  principals: Type.Array(
    Type.Object({
      principal: Type.String(),
      roles: Type.Array(Type.String()),
      tenants: Type.Array(Type.String(), { description: '`*` for every tenant.' }),
      permissions: Type.Array(PolicyPermissionSchema, { description: 'What its roles together allow, in each of its tenants.' }),
    }),
  ),
  retention: Type.Array(
    Type.Object({
      type: enumOf(DATA_TYPES, 'Data type.'),
      defaultTtlSeconds: Type.Union([Type.Integer(), Type.Null()], { description: 'Null: not limited.' }),
      maxTtlSeconds: Type.Union([Type.Integer(), Type.Null()], { description: 'Null: not limited.' }),
    }),
  ),
});

export type TokenizeRequest = Static<typeof TokenizeRequestSchema>;
export type TokenizeItem = Static<typeof TokenizeItemSchema>;
export type TokenizeResponse = Static<typeof TokenizeResponseSchema>;
export type DetokenizeRequest = Static<typeof DetokenizeRequestSchema>;
export type DetokenizeResponse = Static<typeof DetokenizeResponseSchema>;
export type TokenMetadata = Static<typeof TokenMetadataSchema>;
export type AuditListResponse = Static<typeof AuditListResponseSchema>;
export type AuditVerifyResponse = Static<typeof AuditVerifyResponseSchema>;
export type ErrorResponse = Static<typeof ErrorResponseSchema>;
export type PolicyReport = Static<typeof PolicyReportSchema>;
export type PolicyPermission = Static<typeof PolicyPermissionSchema>;

// ---- Key lifecycle ----

export const KeyViewSchema = Type.Object({
  tenant: Type.String(),
  purpose: enumOf(KEY_PURPOSES, 'What the key is for.'),
  version: Type.Integer(),
  state: enumOf(DATA_KEY_STATES, 'Lifecycle state.'),
  kekId: Type.String({ description: 'The key-encryption key that wraps it (`local:vN` or a KMS key ARN).' }),
  createdAt: Type.String({ format: 'date-time' }),
  encryptions: Type.Integer({ description: 'Values encrypted under it so far.' }),
  records: Type.Union([Type.Integer(), Type.Null()], { description: 'Records it encrypts now (data keys only).' }),
});

export const KeysQuerySchema = Type.Object(
  {
    tenant: Type.Optional(Type.String({ pattern: '^[a-z0-9_][a-z0-9_-]{0,63}$' })),
    all: Type.Optional(enumOf(['true', 'false'] as const, 'Every tenant the caller covers.')),
  },
  { additionalProperties: false },
);

export const KeyScopeSchema = Type.Object(
  {
    tenant: Type.Optional(TenantId),
    all: Type.Optional(Type.Boolean({ description: 'Every tenant the caller covers, instead of one.' })),
  },
  { additionalProperties: false },
);

export const RewrapRequestSchema = Type.Object(
  {
    target: Type.Optional(
      Type.Union(
        [
          Type.Object({ type: Type.Literal('local') }, { additionalProperties: false }),
          Type.Object(
            {
              type: Type.Literal('aws-kms'),
              keyId: Type.Optional(
                Type.String({
                  minLength: 1,
                  maxLength: 2048,
                  description: 'Defaults to keyProvider.kms.keyId; must be it or in allowedKeyIds.',
                }),
              ),
            },
            { additionalProperties: false },
          ),
        ],
        { description: 'Switch the primary KEK first (e.g. local master key → KMS); omitted, rewrap to the current one.' },
      ),
    ),
  },
  { additionalProperties: false },
);

export const RetireRequestSchema = Type.Object({ tenant: Type.Optional(TenantId) }, { additionalProperties: false });

export const DestroyRequestSchema = Type.Object(
  {
    tenant: Type.Optional(TenantId),
    confirm: Type.Optional(Type.String({ maxLength: 128, description: 'Must be exactly `destroy <tenant>/data/v<version>`.' })),
  },
  { additionalProperties: false },
);

export const KeyListResponseSchema = Type.Object({ keys: Type.Array(KeyViewSchema) });
export const KeyChangeResponseSchema = Type.Object({ key: KeyViewSchema });
export const RotateResponseSchema = Type.Object({
  rotated: Type.Array(
    Type.Object({
      tenant: Type.String(),
      purpose: Type.Literal('data'),
      version: Type.Integer(),
      previousVersion: Type.Union([Type.Integer(), Type.Null()]),
    }),
  ),
});
export const RewrapResponseSchema = Type.Object({
  kekId: Type.String(),
  rewrapped: Type.Integer(),
  unchanged: Type.Integer(),
  failed: Type.Array(Type.Object({ tenant: Type.String(), purpose: Type.String(), version: Type.Integer(), error: Type.String() })),
});

export const JobSchema = Type.Object({
  id: Type.String(),
  kind: Type.Literal('reencrypt'),
  state: enumOf(['running', 'completed', 'failed'] as const, 'Job state.'),
  tenants: Type.Array(Type.String()),
  total: Type.Integer(),
  done: Type.Integer(),
  failed: Type.Integer({ description: 'Records whose ciphertext could not be opened (left as they were).' }),
  ratePerSecond: Type.Integer(),
  etaSeconds: Type.Union([Type.Integer(), Type.Null()]),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
  finishedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  error: Type.Union([Type.String(), Type.Null()]),
});
export const JobResponseSchema = Type.Object({ job: JobSchema });

export type KeyScope = Static<typeof KeyScopeSchema>;
export type RewrapRequest = Static<typeof RewrapRequestSchema>;
export type DestroyRequest = Static<typeof DestroyRequestSchema>;
export type KeyView = Static<typeof KeyViewSchema>;
export type KeyListResponse = Static<typeof KeyListResponseSchema>;
export type KeyChangeResponse = Static<typeof KeyChangeResponseSchema>;
export type RotateResponse = Static<typeof RotateResponseSchema>;
export type RewrapResponse = Static<typeof RewrapResponseSchema>;
export type JobView = Static<typeof JobSchema>;
export type JobResponse = Static<typeof JobResponseSchema>;

// ---- Data subject rights ----

const SubjectFields = {
  tenant: Type.Optional(TenantId),
  subject: SubjectId,
};

export const SubjectRequestSchema = Type.Object(SubjectFields, { additionalProperties: false });

/** No query at all: a subject id put in the URL (which proxies log) is refused, never silently ignored. */
export const NoQuerySchema = Type.Object({}, { additionalProperties: false });

const IsoTimestamp = (description: string) =>
  Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}(:\\d{2}(\\.\\d{1,9})?)?(Z|[+-]\\d{2}:\\d{2})$', description });

export const AccessLogRequestSchema = Type.Object(
  {
    ...SubjectFields,
    from: Type.Optional(IsoTimestamp('Only decisions at or after this time (ISO 8601 with a zone).')),
    to: Type.Optional(IsoTimestamp('Only decisions before this time (ISO 8601 with a zone).')),
  },
  { additionalProperties: false },
);

export const ConsentRequestSchema = Type.Object(
  {
    ...SubjectFields,
    grant: Type.Optional(PurposeList('Purposes to add to the consented set.')),
    withdraw: Type.Optional(PurposeList('Purposes to remove from it (effective at once on every instance).')),
  },
  { additionalProperties: false },
);

const ConsentedPurposes = Type.Union([Type.Array(Type.String()), Type.Null()], {
  description: 'The purposes the subject consented to; null when none were recorded (no restriction).',
});

export const ExportedRecordSchema = Type.Object({
  token: Type.String(),
  type: enumOf(DATA_TYPES, 'Data type.'),
  format: enumOf(TOKEN_FORMATS, 'Token format.'),
  createdAt: Type.String({ format: 'date-time' }),
  expiresAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  metadata: Type.Union([MetadataSchema, Type.Null()]),
  value: Type.Union([Type.String(), Type.Null()], {
    description: 'At the reveal level your policy gives for detokenize; null when `redacted`.',
  }),
  reveal: enumOf(REVEAL_LEVELS, 'What the caller was given.'),
  error: Type.Optional(Type.Object({ code: Type.Union([Type.Literal('integrity_failed'), Type.Literal('erased')]) })),
});

export const SubjectExportSchema = Type.Object({
  tenant: Type.String(),
  consentedPurposes: ConsentedPurposes,
  records: Type.Array(ExportedRecordSchema, { description: 'Every record of the subject, in token order (streamed).' }),
});

export const AccessLogEntrySchema = Type.Object({
  seq: Type.Integer(),
  ts: Type.String({ format: 'date-time' }),
  principal: Type.String(),
  action: Type.String(),
  types: Type.Array(Type.String()),
  purpose: Type.Union([Type.String(), Type.Null()]),
  outcome: enumOf(['allow', 'deny', 'partial'] as const, 'The decision.'),
  reason: Type.Union([Type.String(), Type.Null()]),
  requestId: Type.String(),
});

export const AccessLogResponseSchema = Type.Object({
  tenant: Type.String(),
  entries: Type.Array(AccessLogEntrySchema, {
    description: 'Every stored audited decision that named the subject, in sequence order (streamed).',
  }),
});

export const EraseResponseSchema = Type.Object({
  tenant: Type.String(),
  erased: Type.Object({ records: Type.Integer({ description: 'Records deleted.' }) }),
});

export const ConsentResponseSchema = Type.Object({ tenant: Type.String(), consentedPurposes: ConsentedPurposes });

export type SubjectRequest = Static<typeof SubjectRequestSchema>;
export type AccessLogRequest = Static<typeof AccessLogRequestSchema>;
export type ConsentRequest = Static<typeof ConsentRequestSchema>;
export type ExportedRecord = Static<typeof ExportedRecordSchema>;
export type SubjectExport = Static<typeof SubjectExportSchema>;
export type AccessLogResponse = Static<typeof AccessLogResponseSchema>;
export type AccessLogEntry = Static<typeof AccessLogEntrySchema>;
export type EraseResponse = Static<typeof EraseResponseSchema>;
export type ConsentResponse = Static<typeof ConsentResponseSchema>;
