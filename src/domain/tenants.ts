/** A tenant id: the isolation unit (merchant, billing entity) that owns tokens, keys and audit rows. */
export type TenantId = string;

/** The tenant a request that names none works in. */
export const DEFAULT_TENANT: TenantId = 'default';

/** The tenant that owns the vault's own keys (the audit chain key); no API caller can name it. */
export const SYSTEM_TENANT: TenantId = '_system';
