import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import {
  CASE_LABEL,
  ORIGINAL_LABELS_ANNOTATION,
  POD_UID_ANNOTATION,
  QUARANTINE_LABEL,
} from '../../../src/containment/labels.js';
import { quarantinePolicy } from '../../../src/containment/network-policy.js';
import {
  originalLabels,
  quarantineLabels,
  selectorKeys,
  selectorMatches,
} from '../../../src/containment/pod.js';

const pod = (labels: Record<string, string>, annotations: Record<string, string> = {}): V1Pod => ({
  metadata: { name: 'p', namespace: 'ns', labels, annotations },
});

describe('selectors', () => {
  it.each([
    [{ app: 'web' }, { app: 'web', tier: 'fe' }, true],
    [{ app: 'web' }, { app: 'api' }, false],
    [{ matchLabels: { app: 'web' } }, { app: 'web' }, true],
    [{ matchExpressions: [{ key: 'tier', operator: 'In', values: ['fe', 'be'] }] }, { tier: 'be' }, true],
    [{ matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['fe'] }] }, { tier: 'fe' }, false],
    [{ matchExpressions: [{ key: 'tier', operator: 'Exists' }] }, {}, false],
    [{ matchExpressions: [{ key: 'tier', operator: 'DoesNotExist' }] }, {}, true],
    [{}, { app: 'web' }, false],
  ])('%j matches %j: %s', (selector, labels, expected) => {
    expect(selectorMatches(selector, labels)).toBe(expected);
  });

  it('lists the keys a selector needs', () => {
    expect(
      selectorKeys({
        matchLabels: { app: 'a' },
        matchExpressions: [
          { key: 'x', operator: 'Exists' },
          { key: 'y', operator: 'DoesNotExist' },
        ],
      }),
    ).toEqual(['app', 'x']);
    expect(selectorKeys({ app: 'a', tier: 'b' })).toEqual(['app', 'tier']);
  });
});

describe('quarantine labels', () => {
  it('detaches by removing the selector keys and keeps the rest', () => {
    const plan = quarantineLabels(
      pod({ app: 'web', tier: 'fe', team: 'x' }),
      'case-1',
      ['app', 'tier'],
      true,
    );
    expect(plan.labels).toEqual({ team: 'x', [CASE_LABEL]: 'case-1', [QUARANTINE_LABEL]: 'true' });
    expect(plan.removed).toEqual({ app: 'web', tier: 'fe' });
    expect(selectorMatches({ app: 'web' }, plan.labels)).toBe(false);
  });

  it('does not detach when not asked', () => {
    const plan = quarantineLabels(pod({ app: 'web' }), 'c', ['app'], false);
    expect(plan.labels.app).toBe('web');
    expect(plan.removed).toEqual({});
  });

  it('reads the original labels back, tolerating a damaged annotation', () => {
    expect(originalLabels(pod({}, { [ORIGINAL_LABELS_ANNOTATION]: '{"app":"web"}' }))).toEqual({
      app: 'web',
    });
    expect(originalLabels(pod({}, { [ORIGINAL_LABELS_ANNOTATION]: 'not json' }))).toEqual({});
    expect(originalLabels(pod({}, { [ORIGINAL_LABELS_ANNOTATION]: '{"app":3}' }))).toEqual({});
  });
});

describe('quarantine NetworkPolicy', () => {
  it('denies all ingress and egress for the case label only, owned by the case', () => {
    const np = quarantinePolicy({ name: 'case-1', uid: 'u-1' }, 'shop', 'pod-uid-1');
    expect(np.metadata?.annotations).toEqual({ [POD_UID_ANNOTATION]: 'pod-uid-1' });
    expect(np.spec).toEqual({
      podSelector: { matchLabels: { [CASE_LABEL]: 'case-1' } },
      policyTypes: ['Ingress', 'Egress'],
      ingress: [],
      egress: [],
    });
    expect(np.metadata?.ownerReferences?.[0]).toMatchObject({
      kind: 'ForensicCase',
      name: 'case-1',
      uid: 'u-1',
      controller: true,
    });
  });
});
