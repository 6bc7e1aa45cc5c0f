import { expect } from 'chai';
import { findSensitiveAuthData } from '../../src/domain/sensitive-auth-data';

/** The matcher alone, over many spellings: names by meaning, values by shape, both after folding. */
describe('domain / sensitive authentication data', () => {
  const inMetadata = (key: string, value: unknown = 'x') => ({ items: [{ type: 'text', value: 'x', metadata: { [key]: value } }] });

  const sadNames = [
    'cvv',
    'CVV2',
    'card_cvv',
    'cvv_code',
    'card.cvv',
    'card-cvv',
    'cardCvv',
    'CardCVV',
    'CVVCode',
    'cvvNumber',
    'cardcvv',
    'cvc',
    'cvc2',
    'CVC_2',
    'card_cvc',
    'cvn2',
    'icvv',
    'cid',
    'amex_cid',
    'cav2',
    'csc',
    'cvd',
    'security_code',
    'securityCode',
    'SecurityCode',
    'card_security_code',
    'securitycode',
    'sec_code',
    'cardCode',
    'card_verification',
    'card_verification_value',
    'verification_value',
    'CardVerificationCode',
    'pin',
    'PIN',
    'pin_code',
    'pinCode',
    'pincode',
    'pin_block',
    'PINBlock',
    'pinblock',
    'card.pin',
    'pin_number',
    'track',
    'track1',
    'track_2',
    'Track2Data',
    'track_data',
    'trackData',
    'track2_equivalent',
    'magstripe',
    'mag_stripe',
    'magneticStripe',
    'ｃｖｖ',
    'c\u200bvv',
    'p\u00adin',
    'ＰＩＮ',
  ];
  for (const name of sadNames) {
    it(`refuses a field named ${JSON.stringify(name)}`, () => {
      expect(findSensitiveAuthData(inMetadata(name)), name).not.to.equal(undefined);
      expect(findSensitiveAuthData({ [name]: 'x' }), name).not.to.equal(undefined);
    });
  }

  const innocentNames = [
    'pinned',
    'spinner',
    'description',
    'opinion',
    'pinyin',
    'shopping',
    'incident',
    'decided',
    'acid',
    'cavity',
    'cscart_id',
    'tracking_number',
    'trackingId',
    'soundtrack',
    'stripe_customer',
    'stripeId',
    'stripe_id',
    'security_question',
    'verification_code_sent',
    'postcode',
    'card_brand',
    'card_last4',
    'cardholder',
    'code',
    'security',
    'type',
    'value',
    'metadata',
  ];
  for (const name of innocentNames) {
    it(`accepts a field named ${JSON.stringify(name)}`, () => {
      expect(findSensitiveAuthData(inMetadata(name)), name).to.equal(undefined);
    });
  }

  it('accepts a SAD-named flag whose value cannot carry the data: true, false, null', () => {
    for (const value of [true, false, null]) expect(findSensitiveAuthData(inMetadata('cvv_present', value))).to.equal(undefined);
    for (const value of ['yes', 0, 123, { v: true }, [true]])
      expect(findSensitiveAuthData(inMetadata('cvv_present', value))).not.to.equal(undefined);
  });

  it('refuses a data type named like SAD', () => {
    for (const type of ['cvv', 'card_cvv', 'pin_block', 'track2']) {
      expect(findSensitiveAuthData({ items: [{ type, value: '1' }] }), type).not.to.equal(undefined);
    }
  });

  const trackValues = [
    ';4111111111111111=25121011000012345678?',
    '4111111111111111=2512101',
    ';4111111111111111D25121011000012345678F?',
    '4111111111111111D2512101',
    '4111111111111111d2512101',
    'swiped 5500005555555559D2612201 at till',
    '%B4111111111111111^DOE/JANE^2512101100000000?',
    '%b4111111111111111^doe/jane^2512101100000000?',
    'B4111111111111111^DOE/JANE^2512',
    '4111111111111111^DOE/JANE^^',
    ';４１１１１１１１１１１１１１１１＝２５１２１０１?',
    '4111\u200b1111\u200b1111\u200b1111D2512',
    '4111-1111-1111-1111=2512101',
  ];
  for (const value of trackValues) {
    it(`refuses track data ${JSON.stringify(value)}`, () => {
      expect(findSensitiveAuthData({ items: [{ type: 'text', value }] })).not.to.equal(undefined);
    });
  }

  const innocentValues = [
    'a=b',
    '123456789012=1234',
    '4111111111111112=2512101',
    'order 12345D2024',
    'room 4D, floor 12',
    'B1234^DOE/JANE^2512',
    'x^y^z',
    '0x1234567890abcdef',
  ];
  for (const value of innocentValues) {
    it(`accepts ${JSON.stringify(value)}`, () => {
      expect(findSensitiveAuthData({ items: [{ type: 'text', value }] })).to.equal(undefined);
    });
  }
});
