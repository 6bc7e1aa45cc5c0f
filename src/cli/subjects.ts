/**
 * `pii-vault subjects …`: data subject requests from a terminal, through the HTTP API of a running
 * vault (see api-client.ts), so they are decided, audited and answered exactly as over HTTP. The
 * subject id is personal data: it is read from standard input unless --subject is given (which
 * ends up in shell history), and sent only in a request body.
 */
import type { AccessLogResponse, ConsentResponse, EraseResponse, ExportedRecord, SubjectExport, SubjectRequest } from '../contract/schemas';
import { apiClient, CliError, print } from './api-client';

interface SubjectsCommandOptions {
  url?: string;
  apiKey?: string;
  tenant?: string;
  subject?: string;
  from?: string;
  until?: string;
  grant?: string;
  withdraw?: string;
  json: boolean;
}

export async function subjectsCommand(
  sub: string,
  o: SubjectsCommandOptions,
  stdin: NodeJS.ReadableStream = process.stdin,
  out: NodeJS.WritableStream = process.stdout,
): Promise<number> {
  const api = apiClient(o);
  const subject: SubjectRequest = { tenant: o.tenant, subject: o.subject ?? (await subjectFrom(stdin)) };
  switch (sub) {
    case 'export': {
      const result = await api<SubjectExport>('POST', '/v1/subjects/export', subject);
      if (o.json) return print(out, result);
      out.write(`tenant ${result.tenant}: ${result.records.length} records; consented purposes: ${purposes(result.consentedPurposes)}\n`);
      for (const r of result.records) out.write(recordLine(r));
      return 0;
    }
    case 'access-log': {
      const result = await api<AccessLogResponse>('POST', '/v1/subjects/access-log', {
        ...subject,
        from: o.from,
        to: o.until,
      });
      if (o.json) return print(out, result);
      for (const e of result.entries) {
        out.write(`${e.seq}  ${e.ts}  ${e.principal}  ${e.action}  ${e.outcome}  ${e.purpose ?? '-'}  ${e.reason ?? '-'}\n`);
      }
      return 0;
    }
    case 'erase': {
      const result = await api<EraseResponse>('POST', '/v1/subjects/erase', subject);
      if (o.json) return print(out, result);
      out.write(`erased ${result.erased.records} records of the subject in tenant ${result.tenant}\n`);
      return 0;
    }
    case 'consent': {
      const change = { grant: list(o.grant), withdraw: list(o.withdraw) };
      if (!change.grant && !change.withdraw) throw new CliError('subjects consent needs --grant P[,P…] and/or --withdraw P[,P…]');
      const result = await api<ConsentResponse>('POST', '/v1/subjects/consent', { ...subject, ...change });
      if (o.json) return print(out, result);
      out.write(`tenant ${result.tenant}: consented purposes: ${purposes(result.consentedPurposes)}\n`);
      return 0;
    }
    default:
      throw new CliError(`unknown subjects command "${sub}" (export, access-log, erase, consent)`);
  }
}

/** The subject id: standard input's first line (a terminal is not waited on). */
async function subjectFrom(stdin: NodeJS.ReadableStream): Promise<string> {
  if ((stdin as NodeJS.ReadStream).isTTY) throw new CliError('give the subject id on standard input (or --subject, kept in shell history)');
  let text = '';
  for await (const chunk of stdin) text += String(chunk);
  const subject = text.split(/\r?\n/, 1)[0].trim();
  if (!subject) throw new CliError('no subject id on standard input');
  return subject;
}

function list(value: string | undefined): string[] | undefined {
  const items = value
    ?.split(',')
    .map((p) => p.trim())
    .filter(Boolean);
  return items?.length ? items : undefined;
}

function purposes(consented: string[] | null): string {
  if (consented === null) return 'none recorded (no restriction)';
  return consented.length ? consented.join(', ') : 'none';
}

function recordLine(r: ExportedRecord): string {
  return `${r.token}  ${r.type}  ${r.createdAt}  ${r.reveal}  ${r.value ?? '-'}\n`;
}
