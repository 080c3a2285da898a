import type { V1NetworkPolicy } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { CASE_LABEL, POD_UID_ANNOTATION } from '../../../src/containment/labels.js';
import {
  decideNode,
  nodesAllowedByPercent,
  nodesHeldByCases,
  type CaseHold,
  type NodeSlots,
} from '../../../src/containment/limits.js';
import {
  pinnedByPolicy,
  policyDrift,
  policyReplacement,
  quarantinePolicy,
} from '../../../src/containment/network-policy.js';

const global = (maxNodes: number, maxPercent: number) => ({
  source: 'the operator configuration',
  maxNodes,
  maxPercent,
});

const hold = (node: string | undefined, ...conditions: [string, string][]): CaseHold => ({
  status: { node, conditions: conditions.map(([type, status]) => ({ type, status })) },
});

describe('nodesHeldByCases', () => {
  it.each<[string, CaseHold[], string[]]>([
    ['no cases', [], []],
    ['a case holding its node', [hold('n1', ['NodeHeld', 'True'])], ['n1']],
    ['NodeHeld False (limit reached) holds nothing', [hold('n1', ['NodeHeld', 'False'])], []],
    ['no NodeHeld condition yet', [hold('n1', ['Contained', 'True'])], []],
    ['released', [hold('n1', ['NodeHeld', 'True'], ['Released', 'True'])], []],
    [
      'releasing, not yet released, still counts',
      [hold('n1', ['NodeHeld', 'True'], ['Released', 'False'])],
      ['n1'],
    ],
    ['held without a node name', [hold(undefined, ['NodeHeld', 'True'])], []],
    [
      'two cases on one node count once',
      [hold('n1', ['NodeHeld', 'True']), hold('n1', ['NodeHeld', 'True'])],
      ['n1'],
    ],
    ['no status at all', [{}], []],
  ])('%s', (_name, cases, held) => {
    expect(nodesHeldByCases(cases).sort()).toEqual(held);
  });

  it('a node stripped of its label still uses its slot when its case says it is held', () => {
    // The Node's label and annotation are gone (root on the node removed them); only the case
    // still says so. The next node must be refused under a limit of one.
    const slots: NodeSlots = {
      heldNodes: nodesHeldByCases([hold('n1', ['NodeHeld', 'True'])]),
      clusterNodes: 8,
      limits: [global(1, 100)],
    };
    expect(decideNode('n2', slots).take).toBe(false);
    expect(decideNode('n1', slots).take).toBe(true);
  });
});

describe('decideNode', () => {
  it.each<[string, string, NodeSlots, boolean]>([
    ['nothing held, limit 1', 'n1', { heldNodes: [], clusterNodes: 8, limits: [global(3, 20)] }, true],
    ['one held, 20% of 8 is 1', 'n2', { heldNodes: ['n1'], clusterNodes: 8, limits: [global(3, 20)] }, false],
    [
      'one held, 20% of 10 is 2',
      'n2',
      { heldNodes: ['n1'], clusterNodes: 10, limits: [global(3, 20)] },
      true,
    ],
    [
      'joining a held node is free',
      'n1',
      { heldNodes: ['n1', 'n2'], clusterNodes: 8, limits: [global(1, 10)] },
      true,
    ],
    ['0 % allows no node', 'n1', { heldNodes: [], clusterNodes: 100, limits: [global(10, 0)] }, false],
    [
      'the tightest limit wins',
      'n3',
      {
        heldNodes: ['n1'],
        clusterNodes: 100,
        limits: [global(10, 50), { source: 'policy p', maxNodes: 1, maxPercent: 100 }],
      },
      false,
    ],
    ['no limits given: allowed', 'n9', { heldNodes: ['n1', 'n2'], clusterNodes: 3, limits: [] }, true],
  ])('%s', (_name, node, slots, take) => {
    expect(decideNode(node, slots).take).toBe(take);
  });

  it('names the limit that refused', () => {
    const d = decideNode('n3', {
      heldNodes: ['n1'],
      clusterNodes: 100,
      limits: [global(10, 50), { source: 'policy p', maxNodes: 1, maxPercent: 100 }],
    });
    expect(d.message).toBe(
      'node limit reached: Amber holds 1 of 100 nodes and policy p allows 1; node n3 is not cordoned, tainted or labelled',
    );
  });

  it('rounds a percentage down but allows one node above 0 %', () => {
    expect([
      nodesAllowedByPercent(20, 4),
      nodesAllowedByPercent(20, 10),
      nodesAllowedByPercent(0, 10),
    ]).toEqual([1, 2, 0]);
  });
});

describe('quarantine policy drift', () => {
  const wanted = quarantinePolicy({ name: 'c1', uid: 'case-uid' }, 'shop', 'pod-uid');
  const stored = (edit?: (p: V1NetworkPolicy) => void) => {
    const p = structuredClone(wanted);
    delete p.spec!.ingress; // the API server drops empty lists
    delete p.spec!.egress;
    p.metadata!.resourceVersion = '9';
    p.metadata!.labels!['example.com/team'] = 'sec'; // someone else's label is no edit
    edit?.(p);
    return p;
  };

  it.each<[string, V1NetworkPolicy | undefined, 'missing' | 'edited' | undefined]>([
    ['absent', undefined, 'missing'],
    ['as stored by the API server', stored(), undefined],
    ['an allow-all ingress rule', stored((p) => (p.spec!.ingress = [{}])), 'edited'],
    [
      'an egress rule',
      stored((p) => (p.spec!.egress = [{ to: [{ ipBlock: { cidr: '0.0.0.0/0' } }] }])),
      'edited',
    ],
    ['Egress dropped from policyTypes', stored((p) => (p.spec!.policyTypes = ['Ingress'])), 'edited'],
    [
      'selector changed',
      stored((p) => (p.spec!.podSelector = { matchLabels: { [CASE_LABEL]: 'x' } })),
      'edited',
    ],
    ['selector widened', stored((p) => (p.spec!.podSelector = {})), 'edited'],
    [
      'managed-by label removed',
      stored((p) => delete p.metadata!.labels!['app.kubernetes.io/managed-by']),
      'edited',
    ],
    [
      'pod UID annotation changed',
      stored((p) => (p.metadata!.annotations![POD_UID_ANNOTATION] = 'other')),
      'edited',
    ],
    ['owner reference removed', stored((p) => (p.metadata!.ownerReferences = [])), 'edited'],
  ])('%s → %s', (_name, current, drift) => {
    expect(policyDrift(current, wanted)).toBe(drift);
  });

  it('replaces over the current resourceVersion and keeps labels others added', () => {
    const r = policyReplacement(
      stored((p) => (p.spec!.ingress = [{}])),
      wanted,
    );
    expect(r.metadata).toMatchObject({
      resourceVersion: '9',
      labels: { 'example.com/team': 'sec', [CASE_LABEL]: 'c1' },
    });
    expect(r.spec).toEqual(wanted.spec);
  });

  it('reads the pin only from a policy the case owns', () => {
    expect(pinnedByPolicy(stored(), 'case-uid')).toBe('pod-uid');
    expect(pinnedByPolicy(stored(), 'another-case-uid')).toBeUndefined();
    expect(pinnedByPolicy(undefined, 'case-uid')).toBeUndefined();
  });
});
