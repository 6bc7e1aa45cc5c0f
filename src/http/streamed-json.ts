import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { TArray, TObject, TSchema, Type } from '@sinclair/typebox';
import type { StreamedDocument } from '../service/streamed-document';
import { allowListed } from './response-allow-list';

const fieldSchemas = new WeakMap<TSchema, Map<string, TSchema>>();

/** The document's schema without its streamed list (built once per schema and list). */
function fieldsSchema(schema: TObject, list: string): TSchema {
  let byList = fieldSchemas.get(schema);
  if (!byList) fieldSchemas.set(schema, (byList = new Map()));
  let fields = byList.get(list);
  if (!fields) byList.set(list, (fields = Type.Omit(schema, [list])));
  return fields;
}

/**
 * Writes a streamed document as one JSON object, each piece through the route's allow-list: the
 * fields, then the list's items as they come (waiting for the socket to drain, so a slow reader
 * holds one page, not the whole list; a reader that goes away ends the reading). The first item is read before the status is sent, so a
 * store failure there is still an error response. A failure after that can no longer change the
 * status: the connection is cut, so the client sees a truncated (invalid) document, never a
 * complete-looking one, and the error goes on to the error handler (logged).
 */
export async function sendStreamedJson(res: ServerResponse, status: number, schema: TObject, doc: StreamedDocument): Promise<void> {
  const itemSchema = (schema.properties[doc.list] as TArray).items;
  const items = doc.items[Symbol.asyncIterator]();
  let next = await items.next();
  const fields = JSON.stringify(allowListed(fieldsSchema(schema, doc.list), doc.fields));
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  try {
    res.write(`${fields.slice(0, -1)}${fields === '{}' ? '' : ','}${JSON.stringify(doc.list)}:[`);
    for (let first = true; !next.done; first = false, next = await items.next()) {
      if (!res.write((first ? '' : ',') + JSON.stringify(allowListed(itemSchema, next.value))) && !(await drained(res))) {
        // The client went away: nothing more will be read, so stop reading the store too.
        await items.return?.();
        return;
      }
    }
    res.end(']}');
  } catch (err) {
    res.destroy();
    throw err;
  }
}

/** True once the socket drains; false when the connection closed first (it would never drain). */
async function drained(res: ServerResponse): Promise<boolean> {
  if (res.destroyed) return false;
  const stop = new AbortController();
  try {
    return await Promise.race([
      once(res, 'drain', { signal: stop.signal }).then(() => true),
      once(res, 'close', { signal: stop.signal }).then(() => false),
    ]);
  } finally {
    stop.abort();
  }
}
