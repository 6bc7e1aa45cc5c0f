/** `import { VaultClient } from 'pii-vault/client'`: a typed client for the vault's API v1, on Node's built-ins only. */
export { VaultClient } from './client';
export type { CallOptions, VaultClientOptions } from './client';
export { VaultApiError, VaultBatchError, VaultConnectionError } from './errors';
export { MAX_BATCH } from './batch';
export { OPERATIONS, TOKENIZE_ITEM_FIELDS } from './operations';
export type { Operation, OperationId } from './operations';
export { isAcceptableRequestId } from './request-id';
export type { RetryOptions } from './retry';
export type { TlsOptions } from './transport';
export type * from './types';
