import type { V1Job, V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import {
  collectionTargets,
  containerPrefix,
  decideCollection,
  jobOutcome,
  parseSummary,
} from '../../../src/collection/decide.js';

const id = (c: string) => c.repeat(64);
const pod: V1Pod = {
  status: {
    initContainerStatuses: [
      {
        name: 'init',
        image: 'i',
        imageID: '',
        ready: false,
        restartCount: 0,
        containerID: `containerd://${id('1')}`,
        state: { terminated: { exitCode: 0, reason: 'Completed' } },
      },
    ],
    containerStatuses: [
      {
        name: 'main',
        image: 'i',
        imageID: '',
        ready: true,
        restartCount: 0,
        containerID: `containerd://${id('a')}`,
        state: { running: {} },
      },
      {
        name: 'sidecar',
        image: 'i',
        imageID: '',
        ready: true,
        restartCount: 0,
        containerID: `cri-o://${id('b')}`,
        state: { running: {} },
      },
      {
        name: 'pending',
        image: 'i',
        imageID: '',
        ready: false,
        restartCount: 0,
        state: { waiting: { reason: 'ContainerCreating' } },
      },
    ],
  },
};

describe('collection targets', () => {
  it('are the running containers with IDs; the others are gaps with a reason', () => {
    const { targets, gaps } = collectionTargets(pod, []);
    expect(targets).toEqual([
      { name: 'main', id: id('a'), runtime: 'containerd', image: 'i' },
      { name: 'sidecar', id: id('b'), runtime: 'cri-o', image: 'i' },
    ]);
    expect(gaps.map((g) => g.what)).toEqual(['container init', 'container pending']);
    expect(gaps[0]!.reason).toMatch(/terminated \(Completed\)/);
  });

  it('honour the case list, and say so when it names a container the pod lacks', () => {
    const { targets, gaps } = collectionTargets(pod, ['sidecar', 'ghost']);
    expect(targets.map((t) => t.name)).toEqual(['sidecar']);
    expect(gaps).toEqual([{ what: 'container ghost', reason: 'the pod has no container of that name' }]);
  });

  it('file artifacts where the collector does', () => {
    expect(containerPrefix(`containerd://${id('a')}`)).toBe('containers/aaaaaaaaaaaa');
  });
});

describe('Job outcome', () => {
  const job = (conditions: { type: string; status: string; reason?: string; message?: string }[]): V1Job => ({
    status: { conditions } as V1Job['status'],
  });
  it('is over only on Complete or Failed', () => {
    expect(jobOutcome(job([]))).toEqual({ state: 'running' });
    expect(jobOutcome(job([{ type: 'SuccessCriteriaMet', status: 'True' }]))).toEqual({ state: 'running' });
    expect(jobOutcome(job([{ type: 'Complete', status: 'True' }]))).toEqual({ state: 'succeeded' });
    expect(
      jobOutcome(job([{ type: 'Failed', status: 'True', reason: 'DeadlineExceeded', message: 'too long' }])),
    ).toEqual({
      state: 'failed',
      reason: 'DeadlineExceeded',
      message: 'too long',
    });
  });
});

describe('termination message', () => {
  it('parses the collector summary and nothing else', () => {
    expect(
      parseSummary(
        '{"ok":false,"fatal":"container not found","collected":0,"failed":1,"skipped":0,"report":null}',
      ),
    ).toMatchObject({ ok: false, fatal: 'container not found' });
    expect(parseSummary('')).toBeUndefined();
    expect(parseSummary('panic: oops')).toBeUndefined();
    expect(parseSummary('{"ok":true}')).toBeUndefined();
  });
});

describe('collection decision', () => {
  it('waits while any collector runs', () => {
    expect(
      decideCollection(
        [
          { container: 'a', state: 'running' },
          { container: 'b', state: 'reported', collected: 3, failed: 0 },
        ],
        [],
      ),
    ).toEqual({
      state: 'running',
      waitingFor: ['a'],
    });
  });

  it('is complete when every container reported and nothing was out of reach', () => {
    const d = decideCollection([{ container: 'a', state: 'reported', collected: 9, failed: 2 }], []);
    expect(d).toMatchObject({ state: 'collected', complete: true, missing: [] });
    expect(d.state === 'collected' && d.message).toMatch(
      /1 of 1 containers collected; a: 2 items unreadable/,
    );
  });

  it('never calls 0 of 0 containers collected', () => {
    const d = decideCollection([], []);
    expect(d).toMatchObject({ state: 'collected', complete: false });
    expect(d.state === 'collected' && d.message).toMatch(
      /0 of 0 containers collected; missing containers: the pod has no running container/,
    );
  });

  it('says what is missing rather than pretending', () => {
    const d = decideCollection(
      [
        { container: 'a', state: 'reported', collected: 9, failed: 0 },
        { container: 'b', state: 'missing', reason: 'Job succeeded; its pod left no termination message' },
      ],
      [{ what: 'container init', reason: 'not running' }],
    );
    expect(d).toMatchObject({ state: 'collected', complete: false });
    expect(d.state === 'collected' && d.message).toBe(
      '1 of 3 containers collected; missing container init: not running; missing container b: Job succeeded; its pod left no termination message',
    );
  });

  it('is incomplete with no container at all (pod gone)', () => {
    expect(decideCollection([], [{ what: 'pod shop/x', reason: 'deleted' }])).toMatchObject({
      state: 'collected',
      complete: false,
    });
  });
});
