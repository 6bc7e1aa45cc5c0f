import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { basename, dirname, join } from 'node:path';

export interface AtomicWriteOptions {
  /** Mode of the written file; default 0600 (everything the vault writes is its own user's). */
  mode?: number;
  /** Refuse to replace an existing file (throws EEXIST), e.g. a master key that must never be overwritten. */
  exclusive?: boolean;
}

/**
 * The one way the vault writes a file. After a crash or power loss the file holds either its old or
 * its new contents, never a mix or nothing: the contents go to a temp file in the same directory
 * (created with the final mode), which is fsynced, then renamed over the target (or hard-linked
 * when `exclusive`, which fails instead of replacing), then the directory is fsynced so the rename
 * itself is on disk. On failure the old file is untouched and the temp file removed.
 */
export function writeFileAtomic(path: string, contents: string | Buffer, options: AtomicWriteOptions = {}): void {
  const mode = options.mode ?? 0o600;
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fd = fs.openSync(tmp, 'wx', mode);
    try {
      fs.fchmodSync(fd, mode); // the umask may have narrowed the mode given to open
      fs.writeFileSync(fd, contents);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    if (options.exclusive) fs.linkSync(tmp, path);
    else fs.renameSync(tmp, path);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  fsyncDirectory(dir);
}

/** Makes the directory's entries (a created, renamed or removed file) durable. */
export function fsyncDirectory(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
