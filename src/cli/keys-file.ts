import { writeFileAtomic } from '../atomic-write';
import type { InitResult } from '../app/init';

/**
 * Writes the starter API keys to a file only the vault's user can read (mode 0600), for places
 * where standard output is collected (a container log): the log then says only where the keys are.
 * The file replaces any earlier one atomically and is on disk before its path is printed.
 */
export function writeKeysFile(path: string, result: InitResult): void {
  writeFileAtomic(path, JSON.stringify({ apiKeys: result.apiKeys, dataDir: result.dataDir }, null, 2) + '\n', { mode: 0o600 });
}
