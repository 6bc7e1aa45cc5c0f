// ESM entry of `pii-vault/client`: the client is compiled to CommonJS (dist/); this re-exports it.
import client from '../dist/src/client/index.js';

export const {
  VaultClient,
  VaultApiError,
  VaultBatchError,
  VaultConnectionError,
  MAX_BATCH,
  OPERATIONS,
  TOKENIZE_ITEM_FIELDS,
  isAcceptableRequestId,
} = client;
export default client;
