import { expect } from 'chai';
import { addressKey, clientAddress, plainAddress, TrustedProxies } from '../../src/http/client-address';

describe('http / client address', () => {
  describe('TrustedProxies (addresses and CIDRs, IPv4 and IPv6)', () => {
    const trusted = new TrustedProxies(['10.0.0.0/8', '192.168.1.7', '2001:db8:aa::/48', '::1']);

    it('matches addresses inside a subnet and single addresses, of both families', () => {
      for (const inside of ['10.0.0.1', '10.255.255.255', '192.168.1.7', '2001:db8:aa::1', '2001:db8:aa:ffff:ffff:ffff:ffff:ffff', '::1']) {
        expect(trusted.has(inside), inside).to.equal(true);
      }
      for (const outside of ['11.0.0.1', '9.255.255.255', '192.168.1.8', '2001:db8:ab::1', '::2', 'not an address', '']) {
        expect(trusted.has(outside), outside).to.equal(false);
      }
    });

    it('/0 trusts a whole family and nothing of the other', () => {
      const all4 = new TrustedProxies(['0.0.0.0/0']);
      expect(all4.has('203.0.113.9')).to.equal(true);
      expect(all4.has('2001:db8::1')).to.equal(false);
    });

    it('refuses entries that are not addresses or CIDRs, naming them', () => {
      for (const bad of ['10.0.0.0/33', '::/129', 'localhost', '10.0.0.0/8/8', '10.0.0.0/', '10.0.0.0/-1', '10.0.0.0/ 8', '1.2.3']) {
        expect(() => new TrustedProxies([bad]), bad).to.throw(bad);
      }
    });
  });

  describe('clientAddress', () => {
    const proxies = new TrustedProxies(['10.0.0.0/8']);

    it('is the socket peer when no proxy is trusted, whatever X-Forwarded-For says', () => {
      expect(clientAddress('203.0.113.1', '198.51.100.7', new TrustedProxies([]))).to.equal('203.0.113.1');
      expect(clientAddress('203.0.113.1', '198.51.100.7', proxies)).to.equal('203.0.113.1');
    });

    it('behind a trusted proxy, is the rightmost untrusted hop: what a client writes to the left is never reached', () => {
      expect(clientAddress('10.0.0.2', '198.51.100.7', proxies)).to.equal('198.51.100.7');
      expect(clientAddress('10.0.0.2', '1.1.1.1, 198.51.100.7', proxies)).to.equal('198.51.100.7');
      expect(clientAddress('10.0.0.2', '1.1.1.1, 198.51.100.7, 10.0.0.9', proxies)).to.equal('198.51.100.7');
      expect(clientAddress('10.0.0.2', ['1.1.1.1', '198.51.100.7'], proxies)).to.equal('198.51.100.7');
    });

    it('stops at the last trusted hop when every hop is trusted, the header is missing, or a hop is not an address', () => {
      expect(clientAddress('10.0.0.2', '10.0.0.3, 10.0.0.4', proxies)).to.equal('10.0.0.3');
      expect(clientAddress('10.0.0.2', undefined, proxies)).to.equal('10.0.0.2');
      expect(clientAddress('10.0.0.2', '198.51.100.7, garbage', proxies)).to.equal('10.0.0.2');
      expect(clientAddress('10.0.0.2', '', proxies)).to.equal('10.0.0.2');
    });

    it('reads IPv4-mapped peers as IPv4, and hops with ports or brackets', () => {
      expect(clientAddress('::ffff:10.0.0.2', '198.51.100.7:4431', proxies)).to.equal('198.51.100.7');
      expect(clientAddress('::ffff:10.0.0.2', '[2001:DB8::1]:443', proxies)).to.equal('2001:db8::1');
      expect(clientAddress(undefined, '198.51.100.7', proxies)).to.equal('unknown');
    });
  });

  describe('addressKey', () => {
    it('counts IPv4 per address and IPv6 per /64', () => {
      expect(addressKey('203.0.113.1')).to.equal('203.0.113.1');
      expect(addressKey('2001:db8:1:2::1')).to.equal('2001:db8:1:2::/64');
      expect(addressKey('2001:db8:1:2:ffff:ffff:ffff:ffff')).to.equal('2001:db8:1:2::/64');
      expect(addressKey('2001:0db8:0001:0003::1')).to.equal('2001:db8:1:3::/64');
      expect(addressKey('::1')).to.equal('0:0:0:0::/64');
      expect(addressKey('64:ff9b::192.0.2.33')).to.equal('64:ff9b:0:0::/64');
      expect(addressKey('2001:db8::')).to.equal('2001:db8:0:0::/64');
    });

    it('plainAddress strips zones and maps ::ffff:a.b.c.d to IPv4; non-addresses are undefined', () => {
      expect(plainAddress('fe80::1%eth0')).to.equal('fe80::1');
      expect(plainAddress('::FFFF:192.0.2.1')).to.equal('192.0.2.1');
      expect(plainAddress('unknown')).to.equal(undefined);
      expect(plainAddress('1.2.3.4.5')).to.equal(undefined);
    });
  });
});
