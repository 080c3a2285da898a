import type { V1Node } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import {
  checkpointPath,
  judgeCheckpointAnswer,
  kubeletEndpoint,
  shownAnswer,
} from '../../../src/collection/checkpoint.js';
import { collectRequest, collectorArgs } from '../../../src/collection/job.js';
import { Collection } from '../../../src/api/common.js';

const root = '/var/lib/kubelet/checkpoints';
const t = { namespace: 'shop', pod: 'web', container: 'app' };
const archive = `${root}/checkpoint-web_shop-app-2026-11-28T14:00:00Z.tar`;

describe("judgeCheckpointAnswer: the kubelet's answer, as evidence", () => {
  const cases: { name: string; status: number; body: string; expect: RegExp | { archive: string } }[] = [
    { name: 'the archive named', status: 200, body: `{"items":["${archive}"]}`, expect: { archive } },
    {
      name: 'feature gate off (404 from the mux)',
      status: 404,
      body: '404 page not found\n',
      expect: /^the kubelet answered HTTP 404: 404 page not found$/,
    },
    {
      name: 'CRIU failing (500 with the runtime error)',
      status: 500,
      body: 'checkpointing of shop/web/app failed (rpc error: code = Unknown desc = criu failed)',
      expect:
        /HTTP 500: checkpointing of shop\/web\/app failed \(rpc error: code = Unknown desc = criu failed\)/,
    },
    {
      name: 'forbidden',
      status: 403,
      body: 'Forbidden (user=x, verb=create, resource=nodes, subresource(s)=[checkpoint])',
      expect: /HTTP 403: Forbidden.*checkpoint/,
    },
    { name: 'an empty refusal', status: 502, body: '', expect: /HTTP 502: \(empty\)/ },
    {
      name: 'a path outside the directory',
      status: 200,
      body: '{"items":["/etc/shadow"]}',
      expect: /refused: "\/etc\/shadow" is not directly in/,
    },
    {
      name: 'a ".." path',
      status: 200,
      body: `{"items":["${root}/../../../root/.ssh/id_rsa"]}`,
      expect: /refused: .* has an empty, "\." or "\.\." component/,
    },
    {
      name: "another container's archive",
      status: 200,
      body: `{"items":["${root}/checkpoint-web_shop-other-2026-11-28T14:00:00Z.tar"]}`,
      expect: /not named as the kubelet names a checkpoint of shop\/web container app/,
    },
    {
      name: 'two archives',
      status: 200,
      body: `{"items":["${archive}","${archive}"]}`,
      expect: /names no single archive/,
    },
    { name: 'no items', status: 200, body: '{}', expect: /names no single archive/ },
    { name: 'not JSON', status: 200, body: 'ok', expect: /HTTP 200 with no JSON: ok/ },
  ];
  it.each(cases)('$name', ({ status, body, expect: want }) => {
    const r = judgeCheckpointAnswer(status, body, t, root);
    if (want instanceof RegExp) expect('refused' in r && r.refused).toMatch(want);
    else expect(r).toEqual(want);
  });

  it('a long answer is kept capped, on one line, with its length', () => {
    const shown = shownAnswer(`line\n${'x'.repeat(5000)}`);
    expect(shown).toMatch(/^line x{995}\.\.\. \(5005 characters\)$/);
  });
});

describe('kubeletEndpoint', () => {
  const node = (addresses: { type: string; address: string }[], port?: number): V1Node => ({
    metadata: { name: 'n1' },
    status: {
      addresses,
      ...(port !== undefined && { daemonEndpoints: { kubeletEndpoint: { Port: port } } }),
    },
  });
  it.each([
    {
      name: 'InternalIP and port',
      n: node(
        [
          { type: 'Hostname', address: 'n1' },
          { type: 'InternalIP', address: '10.0.0.5' },
        ],
        10250,
      ),
      want: { host: '10.0.0.5', port: 10250 },
    },
    {
      name: 'IPv6',
      n: node([{ type: 'InternalIP', address: 'fd00::5' }], 10250),
      want: { host: 'fd00::5', port: 10250 },
    },
    {
      name: 'no port',
      n: node([{ type: 'InternalIP', address: '10.0.0.5' }]),
      want: { gap: 'node n1 publishes no kubelet port (status.daemonEndpoints)' },
    },
    {
      name: 'port 0',
      n: node([{ type: 'InternalIP', address: '10.0.0.5' }], 0),
      want: { gap: 'node n1 publishes no kubelet port (status.daemonEndpoints)' },
    },
    {
      name: 'only a hostname',
      n: node([{ type: 'Hostname', address: 'evil.example' }], 10250),
      want: { gap: 'node n1 publishes no InternalIP address' },
    },
    {
      name: 'an InternalIP that is a name',
      n: node([{ type: 'InternalIP', address: 'evil.example' }], 10250),
      want: { gap: 'node n1 publishes no InternalIP address' },
    },
    { name: 'no node', n: undefined, want: { gap: 'the node is not known to the API server' } },
  ])('$name', ({ n, want }) => expect(kubeletEndpoint(n)).toEqual(want));
});

describe('checkpointPath', () => {
  it('escapes every segment, so a name adds neither a segment nor a query', () => {
    expect(checkpointPath({ namespace: 'shop', pod: 'web', container: 'app' }, 60)).toBe(
      '/checkpoint/shop/web/app?timeout=60',
    );
    expect(checkpointPath({ namespace: '..', pod: 'a/b', container: 'c?x=1#' }, 5)).toBe(
      '/checkpoint/../a%2Fb/c%3Fx%3D1%23?timeout=5',
    );
  });
});

describe("the Job is told the kubelet's answer", () => {
  const spec = Collection.parse({ artifacts: ['processes', 'checkpoint'] });
  const kase = { name: 'c1', uid: 'u1' };
  const pod = { namespace: 'shop', name: 'web', node: 'n1' };
  const target = { name: 'app', id: 'abc', runtime: 'containerd' };
  const store = {
    type: 's3' as const,
    bucket: 'b',
    prefix: 'p/',
    region: 'us-east-1',
    retention: { mode: 'GOVERNANCE' as const, period: '1d', legalHold: false },
  } as Parameters<typeof collectorArgs>[1];
  const args = (request?: { archive: string } | { refused: string }) =>
    collectorArgs(
      collectRequest(kase, pod, target, spec, { checkpointsRoot: root, ...(request && { request }) }),
      store,
    );
  const after = (a: string[], flag: string) => (a.includes(flag) ? a[a.indexOf(flag) + 1] : undefined);

  it('the archive', () => {
    const a = args({ archive });
    expect(after(a, '--checkpoint-archive')).toBe(archive);
    expect(after(a, '--checkpoints-root')).toBe(root);
    expect(a).not.toContain('--checkpoint-refused');
  });
  it('the refusal', () => {
    const a = args({ refused: 'the kubelet answered HTTP 500: criu failed' });
    expect(after(a, '--checkpoint-refused')).toBe('the kubelet answered HTTP 500: criu failed');
    expect(a).not.toContain('--checkpoint-archive');
  });
  it('nothing asked', () => {
    const a = collectorArgs(collectRequest(kase, pod, target, spec), store);
    expect(a.filter((x) => x.startsWith('--checkpoint'))).toEqual([]);
  });
});
