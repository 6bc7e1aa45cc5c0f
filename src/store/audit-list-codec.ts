import { deflateRawSync, inflateRawSync } from 'node:zlib';

/** Lists whose JSON is shorter are stored as text: zlib's set-up would cost more than it saves. */
const DEFLATE_FROM_BYTES = 1024;
/** A stored list never inflates beyond this (a planted deflate bomb must not exhaust memory). */
const MAX_INFLATED_BYTES = 64 * 1024 * 1024;

/**
 * How an audit row's lists (types, tokens, subject HMACs) are stored: as JSON text, or, when that
 * is long, as its raw deflate in a BLOB — random tokens and hex HMACs take about half the space.
 * Lossless: a row's MAC covers the lists themselves, so rows stored either way verify alike, read
 * back identically, and rows written before this encoding read as they always did.
 */
export function encodeAuditList(list: readonly string[]): string | Buffer {
  const json = JSON.stringify(list);
  if (json.length < DEFLATE_FROM_BYTES) return json;
  const deflated = deflateRawSync(json);
  return deflated.length < Buffer.byteLength(json) ? deflated : json;
}

export function decodeAuditList(stored: string | Buffer): string[] {
  const json = typeof stored === 'string' ? stored : inflateRawSync(stored, { maxOutputLength: MAX_INFLATED_BYTES }).toString('utf8');
  return JSON.parse(json);
}
