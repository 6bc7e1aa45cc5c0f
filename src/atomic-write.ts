import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { basename, dirname, join } from 'node:path';

interface AtomicWriteOptions {
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
  const tmp = createTemp(path, options);
  try {
    try {
      fs.writeFileSync(tmp.fd, contents);
      fs.fsyncSync(tmp.fd);
    } finally {
      fs.closeSync(tmp.fd);
    }
    publish(tmp.path, path, options);
  } finally {
    fs.rmSync(tmp.path, { force: true });
  }
  fsyncDirectory(dirname(path));
}

/**
 * writeFileAtomic for contents produced piece by piece (a large export): `fill` writes through
 * `write` and may read the finished temp file (at `tempPath`) to check it before it is published;
 * if `fill` throws, nothing is published.
 */
export async function writeFileAtomicWith<T>(
  path: string,
  fill: (write: (chunk: string | Buffer) => void, tempPath: string) => Promise<T>,
  options: AtomicWriteOptions = {},
): Promise<T> {
  const tmp = createTemp(path, options);
  let result: T;
  try {
    try {
      result = await fill((chunk) => void fs.writeSync(tmp.fd, typeof chunk === 'string' ? Buffer.from(chunk) : chunk), tmp.path);
      fs.fsyncSync(tmp.fd);
    } finally {
      fs.closeSync(tmp.fd);
    }
    publish(tmp.path, path, options);
  } finally {
    fs.rmSync(tmp.path, { force: true });
  }
  fsyncDirectory(dirname(path));
  return result;
}

/** A temp file beside `path`, created with the final mode (the umask may have narrowed the mode given to open). */
function createTemp(path: string, options: AtomicWriteOptions): { path: string; fd: number } {
  const mode = options.mode ?? 0o600;
  const tmpPath = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = fs.openSync(tmpPath, 'wx', mode);
  try {
    fs.fchmodSync(fd, mode);
  } catch (err) {
    fs.closeSync(fd);
    fs.rmSync(tmpPath, { force: true });
    throw err;
  }
  return { path: tmpPath, fd };
}

function publish(tmpPath: string, path: string, options: AtomicWriteOptions): void {
  if (options.exclusive) fs.linkSync(tmpPath, path);
  else fs.renameSync(tmpPath, path);
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
