import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { TraceEvent } from '../../src/core/event';
import { startTestApp, type TestApp } from '../support/app';
import { assertProblem, call } from '../support/http';
import { generateRuns, interleave, tenant, type Tenant } from '../support/query-data';

/**
 * GET /v1/events end to end: the generated runs go in by signed ingest; every
 * filter's pages are compared with the same filter computed here over the
 * events as sent (with the seqs of their receipts).
 */

type Sent = TraceEvent & { seq: number };

interface Item {
  seq: number;
  id: string;
  received_at: string;
  leaf_hash: string;
  chain_hash: string;
  body: TraceEvent;
}

interface Page {
  events: Item[];
  next_cursor: string | null;
  projected_seq: number;
}

async function allPages(t: TestApp, token: string, query: Record<string, string>, limit: number): Promise<{ items: Item[]; pages: number }> {
  const items: Item[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const qs = new URLSearchParams({ ...query, limit: String(limit), ...(cursor ? { cursor } : {}) });
    const res = await call<Page>(t.url, 'GET', `/v1/events?${qs}`, { token });
    assert.equal(res.status, 200, res.text);
    items.push(...res.body.events);
    cursor = res.body.next_cursor;
    pages++;
  } while (cursor);
  return { items, pages };
}

/** RFC 4180, written here independently of src/query/csv.ts. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (cell += '"'), i++;
      else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') row.push(cell), (cell = '');
    else if (c === '\r' && text[i + 1] === '\n') {
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
      i++;
    } else cell += c;
  }
  return rows;
}

describe('GET /v1/events', () => {
  let t: TestApp;
  let a: Tenant;
  let b: Tenant;
  let sent: Sent[] = [];

  before(async () => {
    t = await startTestApp();
    a = await tenant(t, 'qa');
    b = await tenant(t, 'qb');
    for (const batch of interleave(generateRuns({ traces: 50, seed: 11 }), 120)) sent.push(...(await a.send(batch)));
    await b.send(generateRuns({ traces: 3, seed: 12 }).flat());
    sent = sent.sort((x, y) => x.seq - y.seq);
  });
  after(() => t.close());

  const cases: [string, Record<string, string>, (e: Sent) => boolean][] = [
    ['agent', { agent: 'billing-agent' }, (e) => e.agent === 'billing-agent'],
    ['type', { type: 'tool.result' }, (e) => e.type === 'tool.result'],
    ['name and status', { name: 'lookup_order', status: 'error' }, (e) => e.name === 'lookup_order' && e.status === 'error'],
    ['time range', { from: '2026-11-01T00:10:00.000Z', to: '2026-11-01T00:30:00Z' }, (e) => e.time >= '2026-11-01T00:10:00.000Z' && e.time < '2026-11-01T00:30:00.000Z'],
    ['attribute (string)', { 'attr.args.order_id': 'A-1007' }, (e) => (e.attributes?.args as { order_id?: string })?.order_id === 'A-1007'],
    ['attribute (number) and type', { 'attr.args.amount': '100', type: 'tool.call' }, (e) => e.type === 'tool.call' && (e.attributes?.args as { amount?: number })?.amount === 100],
    ['nested attribute', { 'attr.usage.input_tokens': '17' }, (e) => (e.attributes?.usage as { input_tokens?: number })?.input_tokens === 17],
  ];

  for (const [label, query, pred] of cases) {
    test(`filter by ${label}: every page, both orders, equals the independent computation`, async () => {
      const expected = sent.filter(pred).map((e) => e.seq);
      assert.ok(expected.length > 0 || label === 'nested attribute', `the dataset has matches for ${label}`);
      const asc = await allPages(t, a.reader, query, 7);
      assert.deepEqual(asc.items.map((i) => i.seq), expected);
      const desc = await allPages(t, a.reader, { ...query, order: 'desc' }, 9);
      assert.deepEqual(desc.items.map((i) => i.seq), [...expected].reverse());
    });
  }

  test('trace_id and session_id filters, and each item carries its receipt hashes and exact body', async () => {
    const one = sent[sent.length - 1];
    const got = await allPages(t, a.reader, { trace_id: one.trace_id }, 1000);
    const expected = sent.filter((e) => e.trace_id === one.trace_id);
    assert.deepEqual(got.items.map((i) => i.seq), expected.map((e) => e.seq));
    for (const [i, item] of got.items.entries()) {
      const { seq: _seq, ...event } = expected[i];
      assert.deepEqual(item.body, JSON.parse(JSON.stringify(event)));
      assert.equal(item.id, event.id);
      assert.match(item.leaf_hash, /^[0-9a-f]{64}$/);
      assert.match(item.chain_hash, /^[0-9a-f]{64}$/);
    }
    // the hashes are the ledger's own
    const entries = await call<{ entries: { seq: number; leaf_hash: string; chain_hash: string }[] }>(
      t.url, 'GET', `/v1/ledger/entries?from_seq=${got.items[0].seq}&limit=1`, { token: a.reader });
    assert.equal(entries.body.entries[0].leaf_hash, got.items[0].leaf_hash);
    assert.equal(entries.body.entries[0].chain_hash, got.items[0].chain_hash);
    const session = sent.find((e) => e.session_id)!.session_id!;
    const bySession = await allPages(t, a.reader, { session_id: session }, 1000);
    assert.deepEqual(bySession.items.map((i) => i.seq), sent.filter((e) => e.session_id === session).map((e) => e.seq));
  });

  test('without filters the list is the whole ledger in seq order, the service entries included', async () => {
    const all = await allPages(t, a.reader, {}, 1000);
    assert.deepEqual(all.items.map((i) => i.seq), Array.from({ length: all.items.length }, (_, i) => i + 1));
    assert.equal(all.items[0].body.type, 'ledger.key_registered');
  });

  test('read-your-writes: an event is listed right after its 201', async () => {
    const { seq: _seq, ...first } = sent[0];
    const [e] = await a.send([{ ...first, id: crypto.randomUUID(), attributes: { marker: 'ryw' } }]);
    const res = await call<Page>(t.url, 'GET', '/v1/events?attr.marker=ryw', { token: a.reader });
    assert.deepEqual(res.body.events.map((i) => i.seq), [e.seq]);
    assert.ok(res.body.projected_seq >= e.seq);
  });

  test('pages stay exact while another client appends: no duplicates, no gaps', async () => {
    let stop = false;
    const writer = (async () => {
      const runs = generateRuns({ traces: 40, seed: 99 });
      for (const batch of interleave(runs, 25)) {
        if (stop) break;
        await a.send(batch);
      }
    })();
    // newest first, from a head that keeps moving: exactly the seqs below the first page's top
    const desc = await allPages(t, a.reader, { order: 'desc' }, 13);
    const top = desc.items[0].seq;
    assert.deepEqual(desc.items.map((i) => i.seq), Array.from({ length: top }, (_, i) => top - i));
    // oldest first: contiguous from 1 to wherever the projection was when the last page was read
    const asc = await allPages(t, a.reader, { type: 'tool.call' }, 11);
    const seqs = asc.items.map((i) => i.seq);
    assert.equal(new Set(seqs).size, seqs.length);
    assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y));
    stop = true;
    await writer;
    const everything = await allPages(t, a.reader, { type: 'tool.call' }, 1000);
    const prefix = everything.items.map((i) => i.seq).filter((s) => s <= seqs[seqs.length - 1]);
    assert.deepEqual(seqs, prefix);
  });

  test('tenant isolation: another tenant never sees these events', async () => {
    const traceOfA = sent[0].trace_id;
    const res = await call<Page>(t.url, 'GET', `/v1/events?trace_id=${traceOfA}`, { token: b.reader });
    assert.equal(res.status, 200);
    assert.deepEqual(res.body.events, []);
    const all = await allPages(t, b.reader, {}, 1000);
    assert.ok(all.items.length > 0);
    const idsOfA = new Set(sent.map((e) => e.id));
    assert.ok(all.items.every((i) => !idsOfA.has(i.id)));
    // a cursor is only a position: used by another tenant it shows that tenant's own events
    const pageA = await call<Page>(t.url, 'GET', '/v1/events?limit=2', { token: a.reader });
    const res2 = await call<Page>(t.url, 'GET', `/v1/events?limit=1000&cursor=${pageA.body.next_cursor}`, { token: b.reader });
    assert.ok(res2.body.events.every((i) => !idsOfA.has(i.id)));
  });

  test('invalid parameters are 400 problems naming the parameter', async () => {
    const bad: [string, string][] = [
      ['limit=0', 'query.limit'],
      ['limit=1001', 'query.limit'],
      ['limit=ten', 'query.limit'],
      ['order=sideways', 'query.order'],
      ['trace_id=XYZ', 'query.trace_id'],
      ['status=fine', 'query.status'],
      ['from=yesterday', 'query.from'],
      ['to=2026-02-30T00:00:00Z', 'query.to'],
      ['bogus=1', 'query.bogus'],
      ['cursor=not-a-cursor', 'query.cursor'],
      ['attr..x=1', 'query.attr..x'],
      ['agent=a&agent=b', 'query.agent'],
    ];
    for (const [qs, field] of bad) {
      assertProblem(await call(t.url, 'GET', `/v1/events?${qs}`, { token: a.reader }), 400, 'validation_failed', [field]);
    }
    const page = await call<Page>(t.url, 'GET', '/v1/events?limit=1', { token: a.reader });
    assertProblem(await call(t.url, 'GET', `/v1/events?order=desc&cursor=${page.body.next_cursor}`, { token: a.reader }), 400, 'validation_failed', ['query.cursor']);
  });

  test('OpenAPI documents every query route with its parameters and response schema', async () => {
    const doc = (await (await fetch(`${t.url}/docs/openapi.json`)).json()) as {
      paths: Record<string, { get?: { parameters?: { name: string }[]; responses?: Record<string, { content?: Record<string, { schema?: unknown }> }> } }>;
    };
    const params: Record<string, string[]> = {
      '/v1/events': ['trace_id', 'session_id', 'agent', 'type', 'name', 'status', 'from', 'to', 'order', 'cursor', 'limit', 'attr.*'],
      '/v1/traces': ['agent', 'status', 'from', 'to', 'has_violations', 'tool', 'session_id', 'order', 'cursor', 'limit'],
      '/v1/traces/{trace_id}': ['trace_id', 'format'],
      '/v1/reports/tools': ['from', 'to', 'agent', 'slowest'],
      '/v1/reports/loops': ['from', 'to', 'agent', 'min_repeats', 'max_model_calls', 'limit'],
      '/v1/reports/agents': ['from', 'to', 'agent'],
    };
    for (const [path, names] of Object.entries(params)) {
      const op = doc.paths[path]?.get;
      assert.ok(op, `${path} is documented`);
      const documented = op.parameters?.map((p) => p.name) ?? [];
      for (const n of names) assert.ok(documented.includes(n), `${path} documents ${n}`);
      assert.ok(op.responses?.['200']?.content?.['application/json']?.schema, `${path} has a 200 schema`);
    }
  });

  test('auth: no token 401, a token without audit:read 403', async () => {
    assertProblem(await call(t.url, 'GET', '/v1/events'), 401, 'unauthenticated');
    assertProblem(await call(t.url, 'GET', '/v1/events', { token: await t.token('qa', 'events:write') }), 403, 'forbidden');
  });

  test('Accept: application/x-ndjson streams every match as one JSON event per line', async () => {
    const expected = await allPages(t, a.reader, { agent: 'support-agent' }, 1000);
    const res = await fetch(`${t.url}/v1/events?agent=support-agent`, { headers: { authorization: `Bearer ${a.reader}`, accept: 'application/x-ndjson' } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/x-ndjson/);
    const lines = (await res.text()).split('\n');
    assert.equal(lines.pop(), '');
    assert.deepEqual(lines.map((l) => JSON.parse(l) as Item), expected.items);
  });

  test('Accept: text/csv streams every match with a header row; cells round-trip', async () => {
    const expected = await allPages(t, a.reader, { type: 'tool.call', order: 'desc' }, 1000);
    const res = await fetch(`${t.url}/v1/events?type=tool.call&order=desc`, { headers: { authorization: `Bearer ${a.reader}`, accept: 'text/csv' } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/csv/);
    const rows = parseCsv(await res.text());
    const header = rows.shift()!;
    assert.deepEqual(header.slice(0, 4), ['seq', 'id', 'time', 'received_at']);
    assert.equal(rows.length, expected.items.length);
    for (const [i, row] of rows.entries()) {
      const cell = (c: string) => row[header.indexOf(c)];
      const item = expected.items[i];
      assert.equal(Number(cell('seq')), item.seq);
      assert.equal(cell('trace_id'), item.body.trace_id);
      assert.equal(cell('chain_hash'), item.chain_hash);
      assert.deepEqual(JSON.parse(cell('attributes')), item.body.attributes);
    }
    // limit caps a stream; a bad parameter is still a problem, before any byte
    const capped = await fetch(`${t.url}/v1/events?limit=5`, { headers: { authorization: `Bearer ${a.reader}`, accept: 'text/csv' } });
    assert.equal(parseCsv(await capped.text()).length, 6);
    const badRes = await call(t.url, 'GET', '/v1/events?limit=0', { token: a.reader, headers: { accept: 'text/csv' } });
    assertProblem(badRes, 400, 'validation_failed', ['query.limit']);
  });
});
