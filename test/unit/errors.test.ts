import { expect } from 'chai';
import { IntegrityError } from '../../src/crypto/aead';
import { KmsUnavailableError } from '../../src/crypto/aws-kms-key-provider';
import { KeyUnavailableError } from '../../src/crypto/key-provider';
import { DomainValidationError } from '../../src/domain/types';
import { ERROR_CATALOGUE, VaultError } from '../../src/errors';
import { toVaultError } from '../../src/http/error-handler';
import { ExistingRecordChangedError } from '../../src/service/deterministic';
import {
  AuditUnavailableError,
  KeyInUseError,
  StaleDataKeyError,
  StoreUnavailableError,
  TokenCollisionError,
} from '../../src/store/vault-store';

describe('errors: one base class that carries its catalogue code', () => {
  const catalogue = (code: keyof typeof ERROR_CATALOGUE) => ERROR_CATALOGUE[code].message;
  // What each of the vault's errors answers: code, status and the message the caller sees.
  const cases: [Error, string, number, string][] = [
    [
      new StoreUnavailableError('cannot open database /var/secret/vault.db: EACCES'),
      'store_unavailable',
      503,
      catalogue('store_unavailable'),
    ],
    [new AuditUnavailableError(new Error('disk full')), 'audit_unavailable', 503, catalogue('audit_unavailable')],
    [
      new KeyUnavailableError('master key file /etc/vault/master.key is not valid JSON'),
      'key_unavailable',
      503,
      catalogue('key_unavailable'),
    ],
    [
      new KmsUnavailableError('ThrottlingException'),
      'kms_unavailable',
      503,
      'AWS KMS is unavailable (ThrottlingException) and the key needed is not cached; try again later.',
    ],
    [
      new IntegrityError('cannot unwrap data key v3'),
      'key_unavailable',
      503,
      'A key record failed its integrity check; the request was refused.',
    ],
    [new StaleDataKeyError(), 'key_unavailable', 503, 'Keys are being rotated; retry the request.'],
    [new TokenCollisionError(), 'token_collision', 409, catalogue('token_collision')],
    [new KeyInUseError(12), 'key_in_use', 409, catalogue('key_in_use')],
    [new ExistingRecordChangedError(), 'internal_error', 500, catalogue('internal_error')],
    [new DomainValidationError('invalid_value', 'not a valid card number'), 'invalid_value', 400, 'not a valid card number'],
    [new VaultError('forbidden', 'Not allowed to keys:rotate.'), 'forbidden', 403, 'Not allowed to keys:rotate.'],
  ];

  for (const [err, code, status, message] of cases) {
    it(`${err.name} is a VaultError answering ${status} ${code}, telling the caller only its public message`, () => {
      expect(err).to.be.instanceOf(VaultError);
      const answer = toVaultError(err);
      expect(answer).to.equal(err);
      expect({ code: answer.code, status: answer.status, message: answer.publicMessage }).to.deep.equal({ code, status, message });
    });
  }

  it('anything else is internal_error, or the code of a body-parser failure; its message is never passed on', () => {
    const other = toVaultError(new TypeError("Cannot read properties of undefined (reading '4111111111111111')"));
    expect({ code: other.code, status: other.status, message: other.publicMessage }).to.deep.equal({
      code: 'internal_error',
      status: 500,
      message: catalogue('internal_error'),
    });
    expect(toVaultError(Object.assign(new SyntaxError('Unexpected token'), { type: 'entity.parse.failed', status: 400 })).code).to.equal(
      'malformed_json',
    );
  });
});
