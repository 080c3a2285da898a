import { KubeConfig } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/observability/logger.js';
import { LeaderElector } from '../../../src/runtime/leader.js';

// The election itself runs against a real API server: test/integration/runtime/leader.test.ts.
const kubeConfig = new KubeConfig();
kubeConfig.loadFromOptions({
  clusters: [{ name: 'c', server: 'https://127.0.0.1:1' }],
  users: [{ name: 'u' }],
  contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
  currentContext: 'x',
});
const base = { kubeConfig, namespace: 'amber', name: 'amber-operator', logger: silentLogger };

describe('LeaderElector options', () => {
  it('requires retryPeriod < renewDeadline < leaseDuration', () => {
    expect(() => new LeaderElector({ ...base, leaseDurationMs: 10_000, renewDeadlineMs: 10_000 })).toThrow(
      /retryPeriod < renewDeadline < leaseDuration/,
    );
    expect(() => new LeaderElector({ ...base, renewDeadlineMs: 1000, retryPeriodMs: 1000 })).toThrow();
    expect(
      () => new LeaderElector({ ...base, leaseDurationMs: 900, renewDeadlineMs: 500, retryPeriodMs: 100 }),
    ).toThrow(/whole seconds/);
  });

  it('gets a unique identity by default', () => {
    const a = new LeaderElector(base);
    const b = new LeaderElector(base);
    expect(a.identity).not.toBe(b.identity);
    expect(new LeaderElector({ ...base, identity: 'pod-1' }).identity).toBe('pod-1');
    expect(a.isLeader()).toBe(false);
  });
});
