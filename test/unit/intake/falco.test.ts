import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IntakeError } from '../../../src/intake/errors.js';
import { aimAtPod } from './audit-fixtures.js';
import {
  FalcoEvent,
  parseFalcoBody,
  responseCode,
  rfc3339ToNs,
  toAlert,
  wellFormedEvent,
} from '../../../src/intake/falco.js';
import { parseJsonExact } from '../../../src/intake/json.js';

const dir = join(import.meta.dirname, '..', '..', 'fixtures', 'falco');
const fixture = (name: string) => readFileSync(join(dir, name));

function rejects(body: string | Buffer): IntakeError {
  try {
    parseFalcoBody(body);
  } catch (err) {
    expect(err).toBeInstanceOf(IntakeError);
    return err as IntakeError;
  }
  throw new Error('expected a rejection');
}

describe('parseFalcoBody on real Falco events', () => {
  it('parses every fixture', () => {
    const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThanOrEqual(5);
    for (const f of files) expect(() => parseFalcoBody(fixture(f)), f).not.toThrow();
  });

  it('keeps int64 evt.time above 2^53 exact', () => {
    const event = parseFalcoBody(fixture('syscall-terminal-shell.json'));
    expect(event.output_fields['evt.time']).toBe(1610667584834631763n);
    // A plain JSON.parse would have rounded it.
    expect(
      BigInt(JSON.parse(fixture('syscall-terminal-shell.json').toString()).output_fields['evt.time']),
    ).not.toBe(1610667584834631763n);
    expect(parseFalcoBody(fixture('syscall-read-sensitive-file.json')).output_fields['evt.time']).toBe(
      1763990531153390386n,
    );
    // Small numbers stay numbers.
    expect(event.output_fields['proc.tty']).toBe(34817);
    expect(event.output_fields['user.loginuid']).toBe(-1);
  });

  it('tolerates a legacy event: no source, tags, hostname or uuid; null fields; short container ID', () => {
    const alert = toAlert(parseFalcoBody(fixture('syscall-terminal-shell.json')));
    expect(alert).toMatchObject({
      rule: 'Terminal shell in container',
      priority: 'Notice',
      source: 'syscall',
      tags: [],
      hostname: undefined,
      uuid: undefined,
      target: { namespace: 'default', pod: 'alpine' },
    });
    expect(alert.fields['proc.pname']).toBeNull();
    expect(alert.fields['container.id']).toBe('5892b41bcf46');
    expect(alert.timeNs).toBe(1610667584834631763n);
  });

  it('reads bracket keys, tags and hostname of a modern event', () => {
    const alert = toAlert(parseFalcoBody(fixture('syscall-read-sensitive-file.json')));
    expect(alert.fields['proc.aname[2]']).toBe('systemd');
    expect(alert.fields['proc.aname[3]']).toBeNull();
    expect(alert.tags).toContain('mitre_credential_access');
    expect(alert.hostname).toBe('aks-aksnp0lab-30954262-vmss000002');
    expect(alert.target).toEqual({ namespace: 'default', pod: 'hellofalco' });
  });

  it('finds the pod of a k8s_audit event in ka.target.*', () => {
    const alert = toAlert(parseFalcoBody(fixture('k8saudit-attach-exec-pod.json')));
    expect(alert.source).toBe('k8s_audit');
    expect(alert.target).toEqual({ namespace: 'hello-app', pod: 'nginx-676b6c5bbc-4xc6t' });
    expect(alert.fields['ka.uri.param[command]']).toBe('cat');
  });

  it('gives no target for k8s_audit events about other objects, or events without Kubernetes fields', () => {
    expect(toAlert(parseFalcoBody(fixture('k8saudit-disallowed-user.json'))).target).toBeUndefined();
    const alert = toAlert(parseFalcoBody(fixture('syscall-no-kubernetes.json')));
    expect(alert.target).toBeUndefined();
    expect(alert.noTargetReason).toMatch(/names no pod/);
  });

  it('marks the target of a k8s_audit event as the object of an audited request', () => {
    const exec = toAlert(parseFalcoBody(fixture('k8saudit-attach-exec-pod.json')));
    // The stock Attach/Exec rule does not output ka.response.code: unknown.
    expect(exec.auditRequest).toEqual({ responseCode: undefined, subresource: 'exec' });
    const denied = toAlert(parseFalcoBody(aimAtPod(fixture('k8saudit-disallowed-user-denied.json'))));
    expect(denied.target).toEqual({ namespace: 'shop', pod: 'web-0' });
    expect(denied.auditRequest).toEqual({ responseCode: 403, verb: 'patch' });
    const allowed = toAlert(parseFalcoBody(aimAtPod(fixture('k8saudit-disallowed-user.json'))));
    expect(allowed.auditRequest).toEqual({ responseCode: 200, verb: 'update' });
    // The same request as a server-side dry run: the URI says so.
    const dry = aimAtPod(fixture('k8saudit-disallowed-user.json')).replace('/status"', '/status?dryRun=All"');
    expect(dry).toContain('dryRun=All');
    expect(toAlert(parseFalcoBody(dry)).auditRequest).toEqual({
      responseCode: 200,
      verb: 'update',
      dryRun: true,
    });
    // Syscall alerts have a workload target, not a request's.
    expect(toAlert(parseFalcoBody(fixture('syscall-read-sensitive-file.json'))).auditRequest).toBeUndefined();
  });

  it('reads the target of an audit alert only from ka.target.*', () => {
    // Workload fields on an audit alert (no Falco source sends both) are not a way around the check.
    const body = JSON.stringify({
      rule: 'r',
      priority: 'Warning',
      time: '2024-01-01T00:00:00Z',
      source: 'k8s_audit',
      output_fields: { 'k8s.ns.name': 'shop', 'k8s.pod.name': 'web-0' },
    });
    expect(toAlert(parseFalcoBody(body)).target).toBeUndefined();
  });

  it('treats any target read from ka.target.* as the object of an audited request, whatever the source', () => {
    const body = JSON.stringify({
      rule: 'r',
      priority: 'Warning',
      time: '2024-01-01T00:00:00Z',
      source: 'k8saudit-eks',
      output_fields: {
        'ka.target.resource': 'pods',
        'ka.target.namespace': 'shop',
        'ka.target.name': 'web-0',
      },
    });
    expect(toAlert(parseFalcoBody(body))).toMatchObject({
      target: { namespace: 'shop', pod: 'web-0' },
      auditRequest: { responseCode: undefined },
    });
  });

  it.each([
    ['"200"', '200', 200],
    ['a number', 403, 403],
    ['101 (exec upgrade)', '101', 101],
    ['"2xx"', '2xx', undefined],
    ['padded', ' 200', undefined],
    ['too short', '99', undefined],
    ['too large', 600, undefined],
    ['a fraction', 200.5, undefined],
    ['null', null, undefined],
    ['missing', undefined, undefined],
    ['a boolean', true, undefined],
  ] as const)('reads ka.response.code given as %s', (_name, value, expected) => {
    expect(responseCode(value)).toBe(expected);
  });

  it('accepts field values and output longer than 64 KiB (the matcher caps what it reads)', () => {
    const long = 'curl '.repeat(40_000);
    const event = parseFalcoBody(
      JSON.stringify({
        rule: 'r',
        priority: 'Warning',
        time: '2024-01-01T00:00:00Z',
        output: long,
        output_fields: { 'proc.cmdline': long },
      }),
    );
    expect(event.output_fields['proc.cmdline']).toBe(long);
  });

  it('accepts priorities in any case, and info', () => {
    const base = { rule: 'r', time: '2024-01-01T00:00:00Z', output_fields: {} };
    expect(parseFalcoBody(JSON.stringify({ ...base, priority: 'CRITICAL' })).priority).toBe('Critical');
    expect(parseFalcoBody(JSON.stringify({ ...base, priority: 'info' })).priority).toBe('Informational');
  });
});

describe('parseFalcoBody on bad input', () => {
  const ok = {
    output: 'x',
    priority: 'Warning',
    rule: 'r',
    time: '2024-01-01T00:00:00.123456789Z',
    output_fields: {},
  };
  it.each([
    ['not JSON', '{"rule":', 400, 'invalid-json'],
    ['an array', '[1,2]', 422, 'invalid-event'],
    ['no rule', JSON.stringify({ ...ok, rule: undefined }), 422, 'invalid-event'],
    ['a number for rule', JSON.stringify({ ...ok, rule: 7 }), 422, 'invalid-event'],
    ['unknown priority', JSON.stringify({ ...ok, priority: 'Severe' }), 422, 'invalid-event'],
    ['bad time', JSON.stringify({ ...ok, time: 'yesterday' }), 422, 'invalid-event'],
    ['impossible date', JSON.stringify({ ...ok, time: '2024-13-45T00:00:00Z' }), 422, 'invalid-event'],
    ['object field value', JSON.stringify({ ...ok, output_fields: { a: { b: 1 } } }), 422, 'invalid-event'],
    ['deep nesting', '['.repeat(100_000) + ']'.repeat(100_000), 422, 'invalid-event'],
    [
      'an infinite number',
      '{"rule":"r","priority":"Critical","time":"2024-01-01T00:00:00Z","output_fields":{"a":1e400}}',
      422,
      'invalid-event',
    ],
    [
      'a broken long integer',
      '{"rule":"r","priority":"Critical","time":"2024-01-01T00:00:00Z","output_fields":{"a":--12345678901234567890}}',
      400,
      'invalid-json',
    ],
  ])('refuses %s', (_name, body, status, code) => {
    const err = rejects(body);
    expect(err.statusCode).toBe(status);
    expect(err.code).toBe(code);
    expect(err.message.length).toBeGreaterThan(10);
  });

  it('says which field is wrong', () => {
    expect(rejects(JSON.stringify({ ...ok, time: 'yesterday' })).message).toMatch(
      /time: must be an RFC 3339 time/,
    );
  });

  it('refuses invalid UTF-8', () => {
    const err = rejects(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]));
    expect(err.code).toBe('invalid-utf8');
  });

  it('refuses __proto__ keys, and pollutes nothing', () => {
    const err = rejects(
      `{"rule":"r","priority":"Debug","time":"2024-01-01T00:00:00Z","output_fields":{"__proto__":{"x":1}}}`,
    );
    expect(err).toMatchObject({ statusCode: 422, message: expect.stringMatching(/__proto__/) });
    expect(({} as Record<string, unknown>).x).toBeUndefined();
    const event = parseFalcoBody(
      `{"rule":"r","priority":"Debug","time":"2024-01-01T00:00:00Z","output_fields":{"constructor":"y"}}`,
    );
    expect(event.output_fields.constructor).toBe('y');
    expect(Object.getPrototypeOf(event.output_fields)).toBe(Object.prototype);
  });
});

describe('rfc3339ToNs', () => {
  it.each([
    ['2021-01-14T23:39:44.834631763Z', 1610667584834631763n],
    ['2021-01-14T23:39:44Z', 1610667584000000000n],
    ['2022-02-15T14:03:12.12+0000', 1644933792120000000n],
    ['2022-02-15T16:03:12.1+02:00', 1644933792100000000n],
  ])('%s', (time, ns) => expect(rfc3339ToNs(time)).toBe(ns));
});

describe('wellFormedEvent (the schema without the schema library)', () => {
  /** Either it declines, or it returns exactly what the schema returns; it never accepts what the schema refuses. */
  let taken = 0;
  function agreesWithSchema(raw: unknown): void {
    const fast = wellFormedEvent(structuredClone(raw));
    const schema = FalcoEvent.safeParse(structuredClone(raw));
    if (fast === undefined) return;
    taken++;
    expect(schema.success).toBe(true);
    expect(fast).toStrictEqual(schema.data);
    expect(Object.keys(fast)).toEqual(Object.keys(schema.data!));
  }

  it('returns what the schema returns for every fixture', () => {
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.json'))) {
      const raw = parseJsonExact(fixture(f).toString('utf8'));
      expect(wellFormedEvent(raw), f).toBeDefined();
      agreesWithSchema(raw);
    }
  });

  /** Strings up to `max` long, the limit itself included; `max + 1` breaks the field. */
  const text = (max: number, min = 0) =>
    fc.oneof(
      fc.string({ minLength: min, maxLength: Math.min(max, 8) }),
      fc.string({ minLength: max, maxLength: max }),
    );
  const value = fc.oneof(
    fc.string({ maxLength: 5 }),
    fc.integer(),
    fc.double(),
    fc.bigInt(),
    fc.boolean(),
    fc.constant(null),
    fc.array(fc.integer(), { maxLength: 2 }),
    fc.object({ maxDepth: 1 }),
  );
  /** Mostly a valid value of the field (or no field), now and then anything, or one past the limit. */
  const field = <T>(valid: fc.Arbitrary<T>, tooLong?: number) =>
    fc.oneof(
      { arbitrary: valid, weight: 12 },
      { arbitrary: fc.constant(undefined), weight: 2 },
      { arbitrary: value, weight: 1 },
      ...(tooLong ? [{ arbitrary: fc.string({ minLength: tooLong, maxLength: tooLong }), weight: 1 }] : []),
    );
  const optionalText = (max: number) => field(fc.oneof(text(max), fc.constant(null)), max + 1);
  const event = fc.record(
    {
      uuid: optionalText(64),
      output: field(fc.oneof(fc.string(), fc.constant(null))),
      priority: field(fc.constantFrom('warning', 'INFO', 'Critical', 'informational', 'nope', ''), 33),
      rule: field(text(1024, 1), 1025),
      time: field(
        fc.constantFrom(
          '2025-11-24T13:22:11.153390386Z',
          '2021-01-14T23:39:44+01:00',
          '2021-01-14T23:39:44-0130',
          '2021-02-30T23:39:44Z',
          '2021-01-14T23:39:44.1234567890Z',
          '2021-01-14 23:39:44Z',
        ),
      ),
      output_fields: field(
        fc.oneof(
          fc.dictionary(fc.oneof(fc.string({ maxLength: 4 }), text(256), text(257)), value, { maxKeys: 6 }),
          fc.constant(null),
        ),
      ),
      source: optionalText(64),
      tags: field(
        fc.oneof(
          fc.array(fc.oneof({ arbitrary: text(256), weight: 8 }, { arbitrary: value, weight: 1 }), {
            maxLength: 4,
          }),
          fc.constant(null),
        ),
      ),
      hostname: optionalText(253),
      extra: field(fc.string()),
    },
    { requiredKeys: [] },
  );

  it('agrees with the schema on events valid and broken in every field', () => {
    taken = 0;
    fc.assert(
      fc.property(event, (e) => {
        // What JSON.parse can give: no undefined values.
        const raw = Object.fromEntries(Object.entries(e).filter(([, v]) => v !== undefined));
        agreesWithSchema(raw);
      }),
      { numRuns: 3000 },
    );
    // The generator must reach the fast path often, or the property says nothing.
    expect(taken).toBeGreaterThan(50);
  });

  it('declines what the schema refuses at the limits: 513 fields, 129 tags, a 257-character key', () => {
    const base = JSON.parse(fixture('syscall-read-sensitive-file.json').toString('utf8')) as Record<
      string,
      unknown
    >;
    const many = Object.fromEntries(Array.from({ length: 513 }, (_, i) => [`f${i}`, i]));
    for (const broken of [
      { ...base, output_fields: many },
      { ...base, tags: Array.from({ length: 129 }, () => 't') },
      { ...base, output_fields: { ['k'.repeat(257)]: 1 } },
      { ...base, output_fields: { a: Infinity } },
      { ...base, rule: 'r'.repeat(1025) },
      [base],
      null,
    ]) {
      expect(wellFormedEvent(broken)).toBeUndefined();
      expect(FalcoEvent.safeParse(broken).success).toBe(false);
    }
    const edge = {
      ...base,
      output_fields: Object.fromEntries(Array.from({ length: 512 }, (_, i) => [`f${i}`, i])),
    };
    expect(wellFormedEvent(edge)).toBeDefined();
    agreesWithSchema(edge);
  });
});
