import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { loadSigningKey, loadVerificationKey } from '../../../src/evidence/keys.js';
import {
  MANIFEST_NAME,
  PREDICATE_TYPE,
  STATEMENT_TYPE,
  buildStatement,
  encodeManifest,
  judgeManifest,
  openManifest,
} from '../../../src/evidence/manifest.js';
import type { StoredArtifact } from '../../../src/evidence/store.js';

const pem = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const key = loadSigningKey(pem);
const verifier = loadVerificationKey(pem);

const artifacts: StoredArtifact[] = [
  {
    name: 'processes.json',
    uri: 's3://b/cases/c1/processes.json',
    size: 10,
    sha256: 'a'.repeat(64),
    retentionMode: 'COMPLIANCE',
    retainUntil: '2026-04-01T00:00:00.000Z',
    legalHold: false,
    metadata: {
      collectedBy: 'collector/processes',
      node: 'node-1',
      containerId: 'containerd://abc',
      collectedAt: 't1',
    },
  },
  { name: 'logs/app.log', uri: 's3://b/cases/c1/logs/app.log', size: 3, sha256: 'b'.repeat(64) },
];
const input = {
  artifacts,
  caseInfo: {
    id: 'c1',
    namespace: 'shop',
    pod: 'web-1',
    node: 'node-1',
    alertRule: 'Terminal shell in container',
  },
  timeline: [{ time: '2026-01-01T00:00:00Z', action: 'Contained', message: 'NetworkPolicy applied' }],
  location: 's3://b/cases/c1/',
  sealedAt: new Date('2026-01-01T00:01:00Z'),
};

describe('manifest statement', () => {
  it('is an in-toto Statement v1 with one sha256 subject per artifact, sorted by name', () => {
    const s = buildStatement(input);
    expect(s._type).toBe(STATEMENT_TYPE);
    expect(s.predicateType).toBe(PREDICATE_TYPE);
    expect(s.subject).toEqual([
      { name: 'logs/app.log', digest: { sha256: 'b'.repeat(64) } },
      { name: 'processes.json', digest: { sha256: 'a'.repeat(64) } },
    ]);
  });

  it('records who collected each artifact, where and when, plus case info and timeline', () => {
    const s = buildStatement(input);
    expect(s.predicate.artifacts[1]).toMatchObject({
      name: 'processes.json',
      collectedBy: 'collector/processes',
      node: 'node-1',
      containerId: 'containerd://abc',
      collectedAt: 't1',
      retentionMode: 'COMPLIANCE',
      retainUntil: '2026-04-01T00:00:00.000Z',
    });
    expect(s.predicate.case).toMatchObject({
      id: 'c1',
      pod: 'web-1',
      alertRule: 'Terminal shell in container',
    });
    expect(s.predicate.timeline).toHaveLength(1);
    expect(s.predicate.sealedAt).toBe('2026-01-01T00:01:00.000Z');
  });

  it('is deterministic whatever order the artifacts come in', () => {
    const a = encodeManifest(buildStatement(input), key);
    const b = encodeManifest(buildStatement({ ...input, artifacts: [...artifacts].reverse() }), key);
    // Ed25519 signatures are deterministic too, so the whole line is identical.
    expect(a).toBe(b);
  });

  it('refuses duplicate names and the reserved manifest name', () => {
    expect(() => buildStatement({ ...input, artifacts: [artifacts[0]!, artifacts[0]!] })).toThrow(
      /listed twice/,
    );
    expect(() =>
      buildStatement({ ...input, artifacts: [{ ...artifacts[1]!, name: MANIFEST_NAME }] }),
    ).toThrow(/reserved/);
  });

  it('refuses case info without an id', () => {
    expect(() => buildStatement({ ...input, caseInfo: { pod: 'x' } as never })).toThrow();
  });
});

describe('opening a manifest', () => {
  const text = encodeManifest(buildStatement(input), key);

  it('is one JSON line holding a DSSE envelope of an in-toto payload', () => {
    expect(text.endsWith('\n')).toBe(true);
    expect(text.trim().split('\n')).toHaveLength(1);
    const env = JSON.parse(text) as { payloadType: string; signatures: { keyid: string }[] };
    expect(env.payloadType).toBe('application/vnd.in-toto+json');
    expect(env.signatures[0]?.keyid).toBe(key.keyid);
  });

  it('round-trips with a valid signature and no problems', () => {
    const opened = openManifest(text, verifier);
    expect(opened.signature.valid).toBe(true);
    expect(opened.problems).toEqual([]);
    expect(opened.statement?.subject).toHaveLength(2);
  });

  it('reports an edited payload as an invalid signature but still shows what it claims', () => {
    const env = JSON.parse(text) as { payload: string };
    const statement = JSON.parse(Buffer.from(env.payload, 'base64').toString()) as {
      subject: { digest: { sha256: string } }[];
      predicate: { artifacts: { name: string; sha256: string }[] };
    };
    statement.subject[0]!.digest.sha256 = 'c'.repeat(64);
    statement.predicate.artifacts[0]!.sha256 = 'c'.repeat(64);
    env.payload = Buffer.from(JSON.stringify(statement)).toString('base64');
    const opened = openManifest(JSON.stringify(env), verifier);
    expect(opened.signature.valid).toBe(false);
    expect(opened.problems.join()).toMatch(/signature invalid/);
    expect(opened.statement?.subject[0]?.digest.sha256).toBe('c'.repeat(64));
  });

  it('flags subjects that disagree with the predicate', () => {
    const s = buildStatement(input);
    s.subject[0]!.digest.sha256 = 'd'.repeat(64);
    const opened = openManifest(encodeManifest(s, key), verifier);
    expect(opened.signature.valid).toBe(true);
    expect(opened.problems.join()).toMatch(/disagree/);
  });

  it('throws on text that is not an envelope', () => {
    expect(() => openManifest('', verifier)).toThrow(/exactly one DSSE envelope/);
    expect(() => openManifest('{', verifier)).toThrow(/not JSON/);
    expect(() => openManifest('{"a":1}', verifier)).toThrow(/not a DSSE envelope/);
    expect(() => openManifest(`${text}${text}`, verifier)).toThrow(/exactly one/);
  });
});

describe('judging a manifest found in the store', () => {
  const location = 's3://b/cases/c1/';
  const other = loadSigningKey(
    generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  );
  const statement = (over: { id?: string; uid?: string; location?: string } = {}) =>
    buildStatement({
      artifacts,
      caseInfo: { id: over.id ?? 'c1', uid: over.uid ?? 'uid-1' },
      timeline: [],
      location: over.location ?? location,
      sealedAt: new Date('2026-01-01T00:00:00Z'),
    });
  const unsigned = (() => {
    const env = JSON.parse(encodeManifest(statement(), key)) as { signatures: { sig: string }[] };
    env.signatures = [{ sig: Buffer.from('not a signature').toString('base64') }] as never;
    return `${JSON.stringify(env)}\n`;
  })();

  it.each<[string, string, string | true]>([
    ["this operator's seal of this case", encodeManifest(statement(), key), true],
    ['signed by another key', encodeManifest(statement(), other), 'ForeignManifest'],
    ['without a valid signature', unsigned, 'ForeignManifest'],
    ['naming another case', encodeManifest(statement({ id: 'c2' }), key), 'MisboundManifest'],
    [
      'of an earlier case of the same name',
      encodeManifest(statement({ uid: 'uid-0' }), key),
      'MisboundManifest',
    ],
    [
      'sealed at another location',
      encodeManifest(statement({ location: 's3://b/x/c1/' }), key),
      'MisboundManifest',
    ],
    ['not JSON', 'garbage\n', 'UnreadableManifest'],
    [
      'two envelopes',
      `${encodeManifest(statement(), key)}${encodeManifest(statement(), key)}`,
      'UnreadableManifest',
    ],
  ])('%s', (_name, text, expected) => {
    const j = judgeManifest(text, verifier, { caseId: 'c1', caseUid: 'uid-1', location });
    if (expected === true) expect(j.ours).toBe(true);
    else expect(j).toMatchObject({ ours: false, reason: expected });
  });
});

describe('the predicate', () => {
  it("records completeness, findings, custody, the store binding and each artifact's bucket, key and version", () => {
    const s = buildStatement({
      ...input,
      artifacts: [{ ...artifacts[0]!, versionId: 'v-1' }],
      location: 's3://b/cases/c1/',
      sealedAt: new Date('2026-01-01T00:00:00Z'),
      store: { kind: 's3', bucket: 'b', prefix: 'cases' },
      retention: { mode: 'COMPLIANCE', period: '365d', legalHold: true },
      completeness: {
        complete: false,
        gaps: [{ what: 'container side', reason: 'Job failed' }],
        unreadable: [],
      },
      findings: [{ what: 'planted.bin', reason: 'written by nothing this case ran: not signed' }],
      custody: [
        {
          step: 'seal',
          actor: { kind: 'operator', name: 'system:serviceaccount:amber-system:amber-operator' },
          tool: { name: 'amber operator', version: '0.1.0' },
          finishedAt: '2026-01-01T00:00:00.000Z',
        },
      ],
    });
    expect(s.predicate).toMatchObject({
      store: { kind: 's3', bucket: 'b', prefix: 'cases' },
      retention: { legalHold: true },
      completeness: { complete: false, gaps: [{ what: 'container side' }] },
      findings: [{ what: 'planted.bin' }],
      custody: [{ step: 'seal' }],
      artifacts: [{ name: 'processes.json', bucket: 'b', key: 'cases/c1/processes.json', versionId: 'v-1' }],
    });
    expect(s.subject.map((x) => x.name)).toEqual(['processes.json']);
  });
});
