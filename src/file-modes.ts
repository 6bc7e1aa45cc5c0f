import { statSync } from 'node:fs';
import { ConfigError } from './config';

/**
 * Start-up checks of the files the vault trusts. A file others may write (the policy, the config,
 * a CA bundle) lets them grant themselves access or point the vault elsewhere; a secret others may
 * read (the TLS private key) is no longer secret. Either way the vault refuses to start.
 */
export function requireNotWritableByOthers(path: string, what: string): void {
  const mode = modeOf(path, what);
  if (mode & 0o022) {
    throw new ConfigError(
      `${what} ${path} has mode ${mode.toString(8)}: other users can change it; it must be writable only by the vault's user (chmod go-w ${path}, e.g. chmod 600)`,
    );
  }
}

/** A secret: readable and writable by the vault's user only. */
export function requirePrivateFile(path: string, what: string): void {
  const mode = modeOf(path, what);
  if (mode & 0o077) {
    throw new ConfigError(`${what} ${path} has mode ${mode.toString(8)}: other users can read it; it must be 600 (chmod 600 ${path})`);
  }
}

function modeOf(path: string, what: string): number {
  try {
    return statSync(path).mode & 0o7777;
  } catch (err) {
    throw new ConfigError(`${what} ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}
