import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { InitResult } from './init';

/**
 * Writes the starter API keys to a file only the vault's user can read (mode 0600), for places
 * where standard output is collected (a container log): the log then says only where the keys are.
 * The file replaces any earlier one atomically and is on disk before its path is printed.
 */
export function writeKeysFile(path: string, result: InitResult): void {
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, JSON.stringify({ apiKeys: result.apiKeys, dataDir: result.dataDir }, null, 2) + '\n');
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, path);
  const dir = openSync(dirname(path), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}
