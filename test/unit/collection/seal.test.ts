import { describe, expect, it } from 'vitest';
import {
  accountForCase,
  custodySteps,
  type ContainerReport,
  type SealAccountingInput,
} from '../../../src/collection/seal.js';
import type { StoredArtifact } from '../../../src/evidence/store.js';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const pa = `containers/${A.slice(0, 12)}`;
const pb = `containers/${B.slice(0, 12)}`;
const obj = (name: string): StoredArtifact => ({
  name,
  uri: `s3://e/amber/c/${name}`,
  size: 1,
  sha256: '0'.repeat(64),
});
const report = (
  prefix: string,
  names: string[],
  failed: ContainerReport['failed'] = [],
): ContainerReport => ({
  collected: names.map((n) => ({ artifact: `${prefix}/${n}` })),
  failed,
});
const orch = { stored: ['orchestrator/pod.yaml'], gaps: [] };

const base = (over: Partial<SealAccountingInput>): SealAccountingInput => ({
  listing: [],
  wanted: [{ name: 'main', id: A }],
  reports: new Map(),
  orchestrator: orch,
  knownGaps: [],
  ...over,
});

describe('what the seal accounts for', () => {
  it.each<[string, SealAccountingInput, { sealed: string[]; findings: string[]; gaps: string[] }]>([
    [
      'everything reported and present: all sealed, complete',
      base({
        listing: [
          obj(`${pa}/report.json`),
          obj(`${pa}/processes.json`),
          obj('orchestrator/pod.yaml'),
          obj('orchestrator/report.json'),
        ],
        reports: new Map([[pa, report(pa, ['processes.json'])]]),
      }),
      {
        sealed: [
          `${pa}/report.json`,
          `${pa}/processes.json`,
          'orchestrator/pod.yaml',
          'orchestrator/report.json',
        ],
        findings: [],
        gaps: [],
      },
    ],
    [
      'an object planted under the container prefix, not in its report: a finding',
      base({
        listing: [
          obj(`${pa}/report.json`),
          obj(`${pa}/processes.json`),
          obj(`${pa}/planted.bin`),
          obj('orchestrator/pod.yaml'),
          obj('orchestrator/report.json'),
        ],
        reports: new Map([[pa, report(pa, ['processes.json'])]]),
      }),
      {
        sealed: [
          `${pa}/report.json`,
          `${pa}/processes.json`,
          'orchestrator/pod.yaml',
          'orchestrator/report.json',
        ],
        findings: [`${pa}/planted.bin`],
        gaps: [],
      },
    ],
    [
      'a report that claims another prefix speaks for nothing there',
      base({
        listing: [
          obj(`${pa}/report.json`),
          obj('orchestrator/evil.yaml'),
          obj(`${pb}/x`),
          obj('orchestrator/pod.yaml'),
          obj('orchestrator/report.json'),
        ],
        reports: new Map([
          [pa, { collected: [{ artifact: 'orchestrator/evil.yaml' }, { artifact: `${pb}/x` }], failed: [] }],
        ]),
      }),
      {
        sealed: [`${pa}/report.json`, 'orchestrator/pod.yaml', 'orchestrator/report.json'],
        findings: ['orchestrator/evil.yaml', `${pb}/x`],
        gaps: [],
      },
    ],
    [
      'objects at the case root and of unknown containers: findings',
      base({
        listing: [
          obj(`${pa}/report.json`),
          obj('notes.txt'),
          obj(`${pb}/report.json`),
          obj('orchestrator/pod.yaml'),
          obj('orchestrator/report.json'),
        ],
        reports: new Map([[pa, report(pa, [])]]),
      }),
      {
        sealed: [`${pa}/report.json`, 'orchestrator/pod.yaml', 'orchestrator/report.json'],
        findings: ['notes.txt', `${pb}/report.json`],
        gaps: [],
      },
    ],
    [
      'the manifest is never an artifact',
      base({
        listing: [
          obj(`${pa}/report.json`),
          obj('manifest.intoto.jsonl'),
          obj('orchestrator/pod.yaml'),
          obj('orchestrator/report.json'),
        ],
        reports: new Map([[pa, report(pa, [])]]),
      }),
      {
        sealed: [`${pa}/report.json`, 'orchestrator/pod.yaml', 'orchestrator/report.json'],
        findings: [],
        gaps: [],
      },
    ],
    [
      'reported but absent: a gap; unreadable items are not (listed apart)',
      base({
        listing: [obj(`${pa}/report.json`), obj('orchestrator/pod.yaml'), obj('orchestrator/report.json')],
        reports: new Map([
          [pa, report(pa, ['memory.bin'], [{ what: '/proc/7/fd/3', reason: 'FIFO, not read' }])],
        ]),
      }),
      {
        sealed: [`${pa}/report.json`, 'orchestrator/pod.yaml', 'orchestrator/report.json'],
        findings: [],
        gaps: [`${pa}/memory.bin`],
      },
    ],
    [
      'a container without report: a gap with the reason the collection recorded',
      base({
        wanted: [
          { name: 'main', id: A },
          { name: 'side', id: B },
        ],
        listing: [obj(`${pa}/report.json`), obj('orchestrator/pod.yaml'), obj('orchestrator/report.json')],
        reports: new Map([[pa, report(pa, [])]]),
        knownGaps: [{ what: 'container side', reason: 'Job failed (DeadlineExceeded)' }],
      }),
      {
        sealed: [`${pa}/report.json`, 'orchestrator/pod.yaml', 'orchestrator/report.json'],
        findings: [],
        gaps: ['container side'],
      },
    ],
    [
      'no container at all: incomplete, never "collected"',
      base({ wanted: [], listing: [obj('orchestrator/pod.yaml'), obj('orchestrator/report.json')] }),
      { sealed: ['orchestrator/pod.yaml', 'orchestrator/report.json'], findings: [], gaps: ['containers'] },
    ],
    [
      'the collector found no container: a gap, its report sealed',
      base({
        listing: [obj(`${pa}/report.json`)],
        reports: new Map([[pa, report(pa, [], [{ what: 'container', reason: 'not found' }])]]),
        orchestrator: undefined,
      }),
      { sealed: [`${pa}/report.json`], findings: [], gaps: ['container main'] },
    ],
    [
      'no orchestrator report when one was asked for: a gap, and its objects are findings',
      base({
        listing: [obj(`${pa}/report.json`), obj('orchestrator/pod.yaml')],
        reports: new Map([[pa, report(pa, [])]]),
        orchestrator: 'absent',
      }),
      { sealed: [`${pa}/report.json`], findings: ['orchestrator/pod.yaml'], gaps: ['orchestrator view'] },
    ],
  ])('%s', (_name, input, expected) => {
    const r = accountForCase(input);
    expect(r.sealed.map((a) => a.name).sort()).toEqual([...expected.sealed].sort());
    expect(r.findings.map((f) => f.what).sort()).toEqual([...expected.findings].sort());
    expect(r.gaps.map((g) => g.what).sort()).toEqual([...expected.gaps].sort());
    expect(r.complete).toBe(expected.gaps.length === 0);
  });

  it('lists unreadable items of collected parts apart: they do not make the case incomplete', () => {
    const r = accountForCase(
      base({
        listing: [obj(`${pa}/report.json`), obj('orchestrator/pod.yaml'), obj('orchestrator/report.json')],
        reports: new Map([[pa, report(pa, [], [{ what: '/proc/7/fd/3', reason: 'FIFO, not read' }])]]),
        orchestrator: { ...orch, gaps: [{ what: 'logs of main (current)', reason: 'no kubelet' }] },
      }),
    );
    expect(r.complete).toBe(true);
    expect(r.unreadable).toEqual([
      { what: 'main: /proc/7/fd/3', reason: 'FIFO, not read' },
      { what: 'orchestrator: logs of main (current)', reason: 'no kubelet' },
    ]);
  });

  it('names the reason a known gap gave', () => {
    const r = accountForCase(
      base({
        wanted: [{ name: 'side', id: B }],
        orchestrator: undefined,
        knownGaps: [{ what: 'container side', reason: 'Job failed (DeadlineExceeded)' }],
      }),
    );
    expect(r.gaps).toContainEqual({ what: 'container side', reason: 'Job failed (DeadlineExceeded)' });
  });
});

describe('what the store found wrong under the case', () => {
  const listing = [
    obj(`${pa}/report.json`),
    obj(`${pa}/processes.json`),
    obj(`${pa}/env.json`),
    obj('orchestrator/pod.yaml'),
    obj('orchestrator/report.json'),
  ];
  const reports = new Map([[pa, report(pa, ['processes.json', 'env.json'])]]);

  it('a bad key is a finding; the rest is sealed as if it were not there', () => {
    const r = accountForCase(
      base({
        listing,
        reports,
        problems: [{ what: `${pa}/bad name`, reason: 'a key no artifact name can take' }],
      }),
    );
    expect(r.sealed.map((a) => a.name).sort()).toEqual(listing.map((a) => a.name).sort());
    expect(r.findings).toEqual([{ what: `${pa}/bad name`, reason: 'a key no artifact name can take' }]);
    expect(r.complete).toBe(true);
  });

  it('an artifact written twice (or whose record was) is never signed, even listed in its report: a finding and a gap', () => {
    const r = accountForCase(
      base({
        listing,
        reports,
        problems: [
          { what: `${pa}/processes.json`, reason: '2 version(s)', taints: `${pa}/processes.json` },
          {
            what: `.amber/digests/${pa}/env.json.json`,
            reason: 'not a digest record',
            taints: `${pa}/env.json`,
          },
        ],
      }),
    );
    expect(r.sealed.map((a) => a.name).sort()).toEqual(
      [`${pa}/report.json`, 'orchestrator/pod.yaml', 'orchestrator/report.json'].sort(),
    );
    expect(r.findings.map((f) => f.what).sort()).toEqual(
      [`${pa}/processes.json`, `.amber/digests/${pa}/env.json.json`, `${pa}/env.json`].sort(),
    );
    expect(r.gaps.map((g) => g.what).sort()).toEqual([`${pa}/env.json`, `${pa}/processes.json`]);
    expect(r.complete).toBe(false);
  });

  it('a report written twice is not read: its container is a gap and nothing of it is signed', () => {
    const r = accountForCase(
      base({
        listing,
        reports: new Map([[pa, { unreadable: 'touched after it was stored' }]]),
        problems: [{ what: `${pa}/report.json`, reason: '2 version(s)', taints: `${pa}/report.json` }],
      }),
    );
    expect(r.sealed.map((a) => a.name).sort()).toEqual(['orchestrator/pod.yaml', 'orchestrator/report.json']);
    expect(r.gaps.map((g) => g.what)).toContain('container main');
    expect(r.findings.map((f) => f.what)).toContain(`${pa}/report.json`);
  });
});

describe('chain of custody steps', () => {
  it('names the operator for its steps and the node for a collector, with tool, version and zoned times', () => {
    const steps = custodySteps({
      operator: 'system:serviceaccount:amber-system:amber-operator',
      version: '0.1.0',
      collectorImage: 'amber:0.1.0',
      timeline: [{ time: '2026-11-28T03:00:00.000Z', action: 'IsolateNetwork', outcome: 'Succeeded' }],
      reports: [
        {
          container: 'main',
          node: 'node-a',
          report: {
            ...report(pa, ['x']),
            startedAt: '2026-11-28T03:00:01.000Z',
            finishedAt: '2026-11-28T03:00:05.000Z',
          },
        },
      ],
      sealedAt: '2026-11-28T03:00:06.000Z',
    });
    expect(steps).toEqual([
      {
        step: 'IsolateNetwork',
        actor: { kind: 'operator', name: 'system:serviceaccount:amber-system:amber-operator' },
        tool: { name: 'amber operator', version: '0.1.0' },
        finishedAt: '2026-11-28T03:00:00.000Z',
        detail: 'Succeeded',
      },
      {
        step: 'collect container main',
        actor: { kind: 'node', name: 'node/node-a' },
        tool: { name: 'amber collect', version: '0.1.0 (image amber:0.1.0)' },
        startedAt: '2026-11-28T03:00:01.000Z',
        finishedAt: '2026-11-28T03:00:05.000Z',
        detail: '1 artifacts, 0 unreadable items',
      },
      {
        step: 'seal',
        actor: { kind: 'operator', name: 'system:serviceaccount:amber-system:amber-operator' },
        tool: { name: 'amber operator', version: '0.1.0' },
        finishedAt: '2026-11-28T03:00:06.000Z',
      },
    ]);
    for (const s of steps) expect(s.finishedAt).toMatch(/(Z|[+-]\d\d:\d\d)$/);
  });
});
