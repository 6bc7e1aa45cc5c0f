/**
 * Errors of the development KMS (see server.ts). DEV/TEST ONLY — not a production KMS.
 *
 * Every failure is a `KmsError` carrying an AWS KMS error name; the server renders it the way the
 * AWS JSON 1.1 protocol does (status, `x-amzn-ErrorType` header, `{"__type","message"}` body) so
 * the real `@aws-sdk/client-kms` turns it into an exception whose `name` is that error name.
 */

export const KMS_ERROR_NAMES = [
  'NotFoundException',
  'DisabledException',
  'KMSInvalidStateException',
  'InvalidCiphertextException',
  'IncorrectKeyException',
  'AccessDeniedException',
  'ThrottlingException',
  'ValidationException',
  'AlreadyExistsException',
  'UnrecognizedClientException',
  'InvalidSignatureException',
  'MissingAuthenticationTokenException',
  'UnsupportedOperationException',
  'KMSInternalException',
] as const;

export type KmsErrorName = (typeof KMS_ERROR_NAMES)[number];

export function isKmsErrorName(value: unknown): value is KmsErrorName {
  return typeof value === 'string' && (KMS_ERROR_NAMES as readonly string[]).includes(value);
}

export class KmsError extends Error {
  constructor(
    readonly code: KmsErrorName,
    message: string,
  ) {
    super(message);
    this.name = code;
  }

  /** KMSInternalException is the only server-side fault; everything else is the caller's. */
  get status(): number {
    return this.code === 'KMSInternalException' ? 500 : 400;
  }
}

export function validation(message: string): KmsError {
  return new KmsError('ValidationException', message);
}
