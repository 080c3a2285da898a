import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ResponsePolicySpec } from '../../../src/api/responsepolicy.js';
import { bearerExpectation, bearerMatches, buildIntakeApp } from '../../../src/intake/app.js';
import { IntakeEngine } from '../../../src/intake/engine.js';
import { createIntakeMetrics } from '../../../src/intake/metrics.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { createRegistry } from '../../../src/observability/metrics.js';
import { MemoryCaseApi } from './memory-api.js';

const TOKEN = 'test-token-0123456789abcdef';
const auth = { authorization: `Bearer ${TOKEN}` };
const json = { 'content-type': 'application/json' };
const fixture = (name: string) =>
  readFileSync(join(import.meta.dirname, '..', '..', 'fixtures', 'falco', name));

function setup() {
  const api = new MemoryCaseApi();
  const registry = createRegistry();
  const metrics = createIntakeMetrics(registry);
  const engine = new IntakeEngine({
    api,
    logger: silentLogger,
    metrics,
    limits: { maxCordonedNodesPercent: 100 },
  });
  engine.setPolicies([{ name: 'all', spec: ResponsePolicySpec.parse({}) }]);
  const app = buildIntakeApp({
    sink: engine,
    token: TOKEN,
    metrics,
    logger: silentLogger,
    bodyLimit: 64 * 1024,
  });
  return { api, engine, app, registry };
}

describe('bearerMatches', () => {
  it('takes the token and nothing else: not a prefix, an extension, a NUL-padded copy or another scheme', () => {
    const expected = bearerExpectation(TOKEN);
    expect(bearerMatches(`Bearer ${TOKEN}`, expected)).toBe(true);
    expect(bearerMatches(`bearer   ${TOKEN} `, expected)).toBe(true);
    for (const header of [
      undefined,
      '',
      'Bearer',
      'Bearer ',
      `Bearer ${TOKEN.slice(0, -1)}`,
      `Bearer ${TOKEN}x`,
      `Bearer ${TOKEN}\u0000`,
      `Bearer ${TOKEN}\u0000\u0000\u0000`,
      `Bearer ${TOKEN.toUpperCase()}`,
      `Basic ${TOKEN}`,
      `${TOKEN}`,
      `Bearer ${TOKEN}${'a'.repeat(600)}`,
      `Bearer ${'\u00e9'.repeat(300)}`,
    ])
      expect(bearerMatches(header, expected), JSON.stringify(header)).toBe(false);
  });

  it('works for a token longer than the padding, and for any given token', () => {
    const long = 'k'.repeat(700);
    const expected = bearerExpectation(long);
    expect(bearerMatches(`Bearer ${long}`, expected)).toBe(true);
    expect(bearerMatches(`Bearer ${long.slice(1)}`, expected)).toBe(false);
    expect(bearerMatches(`Bearer ${long}k`, expected)).toBe(false);
    const short = bearerExpectation(TOKEN);
    fc.assert(
      fc.property(fc.string({ maxLength: 700 }), (given) => {
        const token = given.trim();
        expect(bearerMatches(`Bearer ${given}`, short)).toBe(token === TOKEN && token.length > 0);
      }),
    );
  });
});

describe('intake webhook', () => {
  const { api, engine, app, registry } = setup();
  afterAll(() => app.close());

  it('answers 401 without a valid token and changes nothing', async () => {
    for (const authorization of [
      undefined,
      'Bearer wrong',
      `Basic ${TOKEN}`,
      `Bearer ${TOKEN}x`,
      'Bearer ',
    ]) {
      const res = await app.inject({
        method: 'POST',
        url: '/',
        headers: { ...json, ...(authorization ? { authorization } : {}) },
        payload: fixture('syscall-terminal-shell.json'),
      });
      expect(res.statusCode).toBe(401);
      expect(res.json()).toEqual({ error: { code: 'unauthorized', message: expect.any(String) } });
    }
    await engine.flush();
    expect(api.cases.size).toBe(0);
    expect(engine.queueDepth).toBe(0);
  });

  it('accepts a real Falco event the way Falcosidekick posts it, on / and /falco', async () => {
    const headers = {
      ...auth,
      'content-type': 'application/json; charset=utf-8',
      'user-agent': 'Falcosidekick',
    };
    const res = await app.inject({
      method: 'POST',
      url: '/',
      headers,
      payload: fixture('syscall-read-sensitive-file.json'),
    });
    expect(res.statusCode).toBe(202);
    expect(res.json()).toMatchObject({ accepted: true, outcome: 'opened', policy: 'all' });
    const again = await app.inject({
      method: 'POST',
      url: '/falco',
      headers,
      payload: fixture('syscall-read-sensitive-file.json'),
    });
    expect(again.json()).toMatchObject({ outcome: 'attached' });
    const audit = await app.inject({
      method: 'POST',
      url: '/',
      headers,
      payload: fixture('k8saudit-disallowed-user.json'),
    });
    expect(audit.json()).toMatchObject({ outcome: 'not-acted', reason: 'no-target' });
  });

  it.each([
    ['wrong content type', { ...auth, 'content-type': 'text/plain' }, '{}', 415, 'unsupported-media-type'],
    [
      'form content type',
      { ...auth, 'content-type': 'application/x-www-form-urlencoded' },
      'a=b',
      415,
      'unsupported-media-type',
    ],
    ['too large', { ...auth, ...json }, `{"rule":"${'x'.repeat(70_000)}"}`, 413, 'body-too-large'],
    ['empty body', { ...auth, ...json }, '', 400, 'empty-body'],
    ['not JSON', { ...auth, ...json }, '{', 400, 'invalid-json'],
    ['not an event', { ...auth, ...json }, '{"hello":"world"}', 422, 'invalid-event'],
  ])('refuses %s with a stable code', async (_n, headers, payload, status, code) => {
    const res = await app.inject({ method: 'POST', url: '/', headers, payload });
    expect(res.statusCode).toBe(status);
    expect(res.json().error.code).toBe(code);
  });

  it('serves /healthz and 404s elsewhere', async () => {
    expect((await app.inject({ method: 'GET', url: '/healthz' })).json()).toEqual({ status: 'ok' });
    expect((await app.inject({ method: 'GET', url: '/nope' })).statusCode).toBe(404);
  });

  it('counts what it received and refused', async () => {
    const text = await registry.metrics();
    expect(text).toMatch(/amber_alerts_rejected_total\{reason="unauthorized"\} 5/);
    expect(text).toMatch(/amber_alerts_received_total 3/);
    expect(text).toMatch(/amber_webhook_duration_seconds_count\{status="202"\} 3/);
  });
});

const isScalar = (v: unknown) => v === null || ['string', 'number', 'boolean'].includes(typeof v);
/** Whether `value` is not acceptable as the Falco event field `key`. */
function isWrongFor(key: string, value: unknown): boolean {
  if (value === undefined || value === null) return ['rule', 'priority', 'time'].includes(key);
  if (key === 'output_fields') {
    if (typeof value !== 'object' || Array.isArray(value)) return true;
    return !Object.values(value).every(isScalar) || Object.keys(value).includes('__proto__');
  }
  if (key === 'tags') return !Array.isArray(value) || !value.every((t) => typeof t === 'string');
  return typeof value !== 'string';
}

describe('fuzz: hostile bodies never crash, never 5xx, never open a case', () => {
  const { api, engine, app } = setup();
  let count = 0;
  beforeAll(() => app.ready());
  afterAll(() => app.close());

  const send = async (payload: string | Buffer, contentType = 'application/json') => {
    const res = await app.inject({
      method: 'POST',
      url: '/',
      headers: { ...auth, 'content-type': contentType },
      payload,
    });
    count++;
    expect(res.statusCode, `${res.statusCode} for ${String(payload).slice(0, 200)}`).toBeGreaterThanOrEqual(
      400,
    );
    expect(res.statusCode).toBeLessThan(500);
    expect(res.json().error.code).toEqual(expect.any(String));
  };

  it('hand-made hostile bodies', async () => {
    const valid = JSON.parse(fixture('syscall-terminal-shell.json').toString()) as Record<string, unknown>;
    const hostile: Array<string | Buffer> = [
      '',
      'null',
      'true',
      '"a string"',
      '123456789012345678901234567890',
      '[]',
      '{}',
      '['.repeat(500_00) + ']'.repeat(500_00),
      '{"a":'.repeat(10_000) + '1' + '}'.repeat(10_000),
      `{"rule":"${'A'.repeat(60_000)}"}`,
      '{"__proto__":{"polluted":true},"rule":"r"}',
      '{"constructor":{"prototype":{"polluted":true}}}',
      JSON.stringify({ ...valid, output_fields: { __proto__: { polluted: 1 } } }).replace(
        '"output_fields":{}',
        '"output_fields":{"__proto__":{"x":1}}',
      ),
      Buffer.from([0xc3, 0x28, 0xa0, 0xa1]),
      Buffer.concat([Buffer.from('{"rule":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')]),
      '\u0000\u0001\u0002',
      '{"rule":"a","rule":"b"}',
      JSON.stringify({ ...valid, priority: 'Severe' }),
      JSON.stringify({ ...valid, time: '2021-02-30T99:99:99Z' }),
      JSON.stringify({ ...valid, time: 1610667584834 }),
      JSON.stringify({ ...valid, rule: '' }),
      JSON.stringify({ ...valid, rule: ['array'] }),
      JSON.stringify({ ...valid, output_fields: [] }),
      JSON.stringify({ ...valid, output_fields: 'x' }),
      JSON.stringify({ ...valid, output_fields: { 'k8s.pod.name': { nested: true } } }),
      JSON.stringify({ ...valid, tags: 'container' }),
      JSON.stringify({ ...valid, tags: [1, 2] }),
      JSON.stringify({ ...valid, hostname: 42 }),
      JSON.stringify({
        ...valid,
        output_fields: Object.fromEntries(Array.from({ length: 600 }, (_, i) => [`f${i}`, i])),
      }),
      '{"rule":"r","priority":"Critical","time":"2024-01-01T00:00:00Z","output_fields":{"a":1e400}}',
      '{"rule":"r","priority":"Critical","time":"2024-01-01T00:00:00Z","output_fields":{"a":NaN}}',
      '{"rule":"r" "priority":"Critical"}',
      "{'rule':'r'}",
    ];
    for (const body of hostile) await send(body);
    for (const ct of [
      'text/plain',
      'application/xml',
      'multipart/form-data; boundary=x',
      'application/jsonx',
      'json',
    ]) {
      const res = await app.inject({
        method: 'POST',
        url: '/',
        headers: { ...auth, 'content-type': ct },
        payload: fixture('syscall-terminal-shell.json'),
      });
      count++;
      expect(res.statusCode).toBe(415);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('generated bodies: arbitrary JSON, mutated events, random bytes', async () => {
    const valid = JSON.parse(fixture('syscall-read-sensitive-file.json').toString()) as Record<
      string,
      unknown
    >;
    const keys = Object.keys(valid);
    // Each mutation gives one key a value of the wrong type, so that every body is malformed.
    const mutated = fc
      .record({
        key: fc.constantFrom(...keys),
        value: fc.anything({
          withObjectString: true,
          withNullPrototype: true,
          withBigInt: false,
          maxDepth: 4,
        }),
      })
      .map(({ key, value }) => ({ key, body: JSON.stringify({ ...valid, [key]: value }) }))
      // Judge the value as it is sent (JSON turns a Map into {} and drops undefined).
      .filter(({ key, body }) => isWrongFor(key, (JSON.parse(body) as Record<string, unknown>)[key]))
      .map(({ body }) => body);
    const arbitraryJson = fc
      .jsonValue({ maxDepth: 6 })
      .filter((v) => !(typeof v === 'object' && v !== null && !Array.isArray(v) && 'rule' in v))
      .map((v) => JSON.stringify(v));
    const bytes = fc.uint8Array({ maxLength: 512 }).map((b) => Buffer.from(b));
    const strings = fc.string({ unit: 'binary', maxLength: 300 });
    await fc.assert(
      fc.asyncProperty(fc.oneof(mutated, arbitraryJson, bytes, strings), async (body) => {
        await send(body);
      }),
      { numRuns: 10_500 },
    );
  }, 120_000);

  it('created nothing', async () => {
    await engine.flush();
    expect(count).toBeGreaterThanOrEqual(10_000);
    expect(api.calls.create).toBe(0);
    expect(api.cases.size).toBe(0);
    expect(engine.queueDepth).toBe(0);
  });
});
