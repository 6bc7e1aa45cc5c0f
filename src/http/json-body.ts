import { isUtf8 } from 'node:buffer';
import type { ServerResponse } from 'node:http';
import { VaultError } from '../errors';
import { ApiRequest, isJsonRequest, Next } from './pipeline';

/**
 * Reads a JSON body of at most `limit` bytes. Unlike a parser that drains an oversized body before
 * answering (so the connection can be reused), this answers 413 at once — from Content-Length
 * before a byte is read, or as soon as a chunked body passes the limit — and closes the
 * connection, so a 100 MiB upload costs neither memory nor time. Compressed bodies are refused.
 */
export function jsonBody(limit: number) {
  return (req: ApiRequest, res: ServerResponse, next: Next) => {
    const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
    if (!hasBody || !isJsonRequest(req)) return next();
    const charset = /charset=([^;\s]+)/i
      .exec(req.headers['content-type'] ?? '')?.[1]
      ?.toLowerCase()
      .replace(/^"|"$/g, '');
    const encoding = (req.headers['content-encoding'] ?? 'identity').toLowerCase();
    if ((charset && charset !== 'utf-8' && charset !== 'utf8') || encoding !== 'identity') {
      return refuse(req, res, next, new VaultError('unsupported_media_type', 'The body must be uncompressed UTF-8 application/json.'));
    }
    if (Number(req.headers['content-length'] ?? 0) > limit) return refuse(req, res, next, new VaultError('payload_too_large'));

    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (error?: VaultError) => {
      if (done) return;
      done = true;
      req.off('data', onData);
      if (error) return refuse(req, res, next, error);
      const bytes = Buffer.concat(chunks, size);
      // Invalid UTF-8 (an encoded lone surrogate, a stray byte) would be decoded silently to U+FFFD: another value.
      if (!isUtf8(bytes)) return next(new VaultError('malformed_json', 'The request body is not valid UTF-8.'));
      const text = bytes.toString('utf8');
      try {
        const parsed: unknown = JSON.parse(text);
        if (typeof parsed !== 'object' || parsed === null) throw new SyntaxError('not an object or array');
        req.body = parsed;
      } catch {
        return next(new VaultError('malformed_json'));
      }
      next();
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) return finish(new VaultError('payload_too_large'));
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => finish());
    req.once('error', () => finish(new VaultError('invalid_request', 'The request body could not be read.')));
  };
}

/** Answers an error and closes the connection instead of reading what is left of the body. */
function refuse(req: ApiRequest, res: ServerResponse, next: Next, error: VaultError) {
  res.setHeader('Connection', 'close');
  res.once('finish', () => req.socket.destroySoon?.());
  next(error);
}
