import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestApp, type TestApp } from '../support/app';

describe('OpenAPI document at /docs/openapi.json', () => {
  let t: TestApp;
  let doc: { paths: Record<string, Record<string, { parameters?: { name: string }[] }>> } & Record<string, unknown>;

  before(async () => {
    t = await startTestApp();
    const res = await fetch(`${t.url}/docs/openapi.json`);
    assert.equal(res.status, 200);
    doc = (await res.json()) as typeof doc;
  });
  after(() => t.close());

  test('documents every v1 route of the service', () => {
    for (const path of ['/v1/events', '/v1/keys', '/v1/keys/{kid}/revoke', '/v1/ledger/head', '/v1/ledger/entries', '/v1/ledger/verify']) {
      assert.ok(doc.paths[path], `${path} is missing`);
    }
    const names = doc.paths['/v1/ledger/entries'].get.parameters?.map((p) => p.name);
    assert.deepEqual(names?.sort(), ['from_seq', 'limit']);
  });

  test('every $ref resolves inside the document', () => {
    const refs: string[] = [];
    const walk = (n: unknown): void => {
      if (Array.isArray(n)) n.forEach(walk);
      else if (n && typeof n === 'object') {
        for (const [k, v] of Object.entries(n)) {
          if (k === '$ref' && typeof v === 'string') refs.push(v);
          else walk(v);
        }
      }
    };
    walk(doc);
    for (const ref of refs) {
      assert.match(ref, /^#\//, ref);
      const target = ref
        .slice(2)
        .split('/')
        .reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], doc);
      assert.ok(target, `dangling ${ref}`);
    }
  });
});
