import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AllowList, blockedReason, checkWebhookUrl, embeddedIpv4, UrlRefusedError, type Resolver } from '../../src/alerts/webhook-url';

/** A resolver that answers from a table and counts lookups; nothing here touches the network. */
function fakeResolver(table: Record<string, string[]>): Resolver & { calls: string[] } {
  const calls: string[] = [];
  const r = async (host: string) => {
    calls.push(host);
    const addrs = table[host];
    if (!addrs) throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
    return addrs.map((address) => ({ address, family: (address.includes(':') ? 6 : 4) as 4 | 6 }));
  };
  return Object.assign(r, { calls });
}

const none = new AllowList([]);

async function refused(url: string, allow = none, resolver: Resolver = fakeResolver({})): Promise<string> {
  try {
    await checkWebhookUrl(url, allow, resolver);
  } catch (err) {
    assert.ok(err instanceof UrlRefusedError, String(err));
    return err.message;
  }
  assert.fail(`${url} was accepted`);
}

describe('webhook URL guard: addresses', () => {
  const cases: [string, RegExp][] = [
    ['127.0.0.1', /^loopback$/],
    ['127.255.0.9', /^loopback$/],
    ['10.0.0.1', /^private$/],
    ['172.16.5.4', /^private$/],
    ['172.31.255.255', /^private$/],
    ['192.168.1.1', /^private$/],
    ['169.254.169.254', /^link-local$/],
    ['100.64.0.1', /^CGNAT/],
    ['100.127.255.254', /^CGNAT/],
    ['224.0.0.251', /^multicast$/],
    ['239.255.255.250', /^multicast$/],
    ['0.0.0.0', /^unspecified/],
    ['255.255.255.255', /^reserved/],
    ['198.18.0.1', /^reserved/],
    ['::', /^unspecified$/],
    ['::1', /^loopback$/],
    ['fe80::1', /^link-local$/],
    ['fe80::1%eth0', /^link-local$/],
    ['fd00::1', /^private/],
    ['fc12:3456::1', /^private/],
    ['ff02::1', /^multicast$/],
    ['::ffff:127.0.0.1', /^loopback \(IPv4 127\.0\.0\.1 inside IPv6\)$/],
    ['::ffff:7f00:1', /^loopback \(IPv4 127\.0\.0\.1 inside IPv6\)$/],
    ['::ffff:10.1.2.3', /^private \(IPv4/],
    ['::ffff:a9fe:a9fe', /^link-local \(IPv4 169\.254\.169\.254/],
    ['64:ff9b::7f00:1', /^loopback \(IPv4/],
    ['2002:c0a8:0101::1', /^private \(IPv4 192\.168\.1\.1/],
    ['::127.0.0.1', /^reserved/],
    ['2001:db8::1', /^reserved/],
  ];
  for (const [addr, want] of cases) {
    test(`${addr} is refused`, () => assert.match(blockedReason(addr) ?? '(allowed)', want));
  }

  for (const addr of ['8.8.8.8', '1.1.1.1', '100.63.255.255', '100.128.0.0', '172.15.255.255', '172.32.0.0', '2606:4700::1111', '::ffff:8.8.8.8', '64:ff9b::808:808']) {
    test(`${addr} is public`, () => assert.equal(blockedReason(addr), undefined));
  }

  test('embedded IPv4 of mapped, NAT64 and 6to4 addresses', () => {
    assert.equal(embeddedIpv4('::ffff:1.2.3.4'), '1.2.3.4');
    assert.equal(embeddedIpv4('::ffff:0102:0304'), '1.2.3.4');
    assert.equal(embeddedIpv4('64:ff9b::1.2.3.4'), '1.2.3.4');
    assert.equal(embeddedIpv4('2002:0102:0304::'), '1.2.3.4');
    assert.equal(embeddedIpv4('2606:4700::1111'), undefined);
  });
});

describe('webhook URL guard: URLs', () => {
  test('non-http(s) schemes are refused before any lookup', async () => {
    const r = fakeResolver({ 'example.com': ['93.184.215.14'] });
    for (const url of ['ftp://example.com/x', 'file:///etc/passwd', 'gopher://example.com/', 'javascript:alert(1)']) {
      assert.match(await refused(url, none, r), /scheme .* is not allowed; use http or https/);
    }
    assert.deepEqual(r.calls, []);
  });

  test('literal private and loopback addresses, in every spelling the URL parser accepts', async () => {
    assert.match(await refused('http://127.0.0.1:8080/hook'), /the address 127\.0\.0\.1 is a loopback address/);
    assert.match(await refused('http://2130706433/'), /127\.0\.0\.1 is a loopback/);
    assert.match(await refused('http://0x7f.1/'), /127\.0\.0\.1 is a loopback/);
    assert.match(await refused('http://[::1]/'), /::1 is a loopback/);
    assert.match(await refused('http://[::ffff:127.0.0.1]/'), /loopback \(IPv4 127\.0\.0\.1 inside IPv6\)/);
    assert.match(await refused('http://10.0.0.1/'), /a private address/);
    assert.match(await refused('http://169.254.169.254/latest/meta-data/'), /a link-local address/);
    assert.match(await refused('http://0.0.0.0/'), /an unspecified/);
    assert.match(await refused('http://[::]/'), /an unspecified/);
    assert.match(await refused('http://100.64.1.1/'), /CGNAT/);
  });

  test('a host name is refused when any of its addresses is private', async () => {
    const r = fakeResolver({ localhost: ['127.0.0.1', '::1'], 'mixed.example': ['93.184.215.14', '10.0.0.7'] });
    assert.match(await refused('http://localhost:3000/', none, r), /the host "localhost" resolves to 127\.0\.0\.1, which is a loopback address/);
    assert.match(await refused('https://mixed.example/', none, r), /resolves to 10\.0\.0\.7, which is a private address/);
    assert.match(await refused('https://nowhere.example/', none, r), /does not resolve \(ENOTFOUND\)/);
  });

  test('the refusal names the allow-list setting', async () => {
    assert.match(await refused('http://10.0.0.1/'), /WEBHOOK_ALLOWED_HOSTS/);
  });

  test('credentials in the URL are refused', async () => {
    assert.match(await refused('https://user:pw@93.184.215.14/'), /credentials/);
  });

  test('public hosts pass and keep their resolved addresses for the connection', async () => {
    const r = fakeResolver({ 'hooks.example.com': ['93.184.215.14', '2606:2800:21f:cb07:6820:80da:af6b:8b2c'] });
    const c = await checkWebhookUrl('https://hooks.example.com/in?x=1', none, r);
    assert.equal(c.host, 'hooks.example.com');
    assert.deepEqual(
      c.addresses.map((a) => a.address),
      ['93.184.215.14', '2606:2800:21f:cb07:6820:80da:af6b:8b2c'],
    );
  });

  test('the allow-list admits names, wildcard subdomains, addresses and CIDRs', async () => {
    const allow = new AllowList(['127.0.0.1', '10.1.0.0/16', 'receiver.internal', '*.svc.cluster.local', '::1']);
    const r = fakeResolver({
      'receiver.internal': ['10.9.9.9'],
      'receiver.internal.': ['10.9.9.9'],
      'hooks.svc.cluster.local': ['10.200.0.1'],
      'other.internal': ['10.9.9.9'],
      'in-range.internal': ['10.1.3.4'],
    });
    await checkWebhookUrl('http://127.0.0.1:9000/', allow, r);
    await checkWebhookUrl('http://[::1]:9000/', allow, r);
    await checkWebhookUrl('http://[::ffff:127.0.0.1]:9000/', allow, r);
    await checkWebhookUrl('http://10.1.200.3/', allow, r);
    await checkWebhookUrl('http://receiver.internal/', allow, r);
    await checkWebhookUrl('http://RECEIVER.internal./', allow, r);
    await checkWebhookUrl('http://hooks.svc.cluster.local/', allow, r);
    await checkWebhookUrl('http://in-range.internal/', allow, r);
    assert.match(await refused('http://other.internal/', allow, r), /10\.9\.9\.9, which is a private/);
    assert.match(await refused('http://127.0.0.2/', allow, r), /loopback/);
    assert.match(await refused('http://10.2.0.1/', allow, r), /private/);
  });
});
