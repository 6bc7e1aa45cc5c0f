import pino from 'pino';

export type Logger = pino.Logger;

/**
 * Structured JSON logs. Request bodies and credentials are never passed to the logger; the
 * redaction below is a second line of defence should one ever be.
 */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'pii-vault' },
      redact: {
        paths: ['req.headers.authorization', 'headers.authorization', 'authorization', 'body', 'req.body', 'value', 'values', 'apiKey'],
        censor: '[redacted]',
      },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}
