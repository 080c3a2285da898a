import { describe, expect, it } from 'vitest';
import { TIMELINE_LIMIT } from '../../../src/api/forensiccase.js';
import { phaseOf } from '../../../src/cases/phase.js';
import { StatusBuilder } from '../../../src/cases/status.js';

const clock = (iso: string) => () => new Date(iso);

describe('StatusBuilder', () => {
  it('keeps lastTransitionTime while a condition status is unchanged', () => {
    const first = new StatusBuilder(undefined, 1, clock('2026-01-01T00:00:00Z'));
    first.setCondition('Contained', 'True', 'Contained', 'ok');
    const second = new StatusBuilder(first.finish(), 2, clock('2026-01-01T00:05:00Z'));
    second.setCondition('Contained', 'True', 'Contained', 'still ok');
    expect(second.condition('Contained')).toMatchObject({
      lastTransitionTime: '2026-01-01T00:00:00.000Z',
      observedGeneration: 2,
      message: 'still ok',
    });
    second.setCondition('Contained', 'False', 'PodNotFound', 'gone');
    expect(second.condition('Contained')?.lastTransitionTime).toBe('2026-01-01T00:05:00.000Z');
  });

  it('reports no change when nothing changed, so no write is made', () => {
    const a = new StatusBuilder(undefined, 1, clock('2026-01-01T00:00:00Z'));
    a.setCondition('Valid', 'True', 'SpecValid', 'ok');
    const saved = a.finish();
    const b = new StatusBuilder(saved, 1, clock('2026-01-01T01:00:00Z'));
    b.setCondition('Valid', 'True', 'SpecValid', 'ok');
    b.finish();
    expect(b.changed).toBe(false);
    b.record('X', 'Succeeded');
    expect(b.changed).toBe(true);
  });

  it('bounds the timeline, dropping the oldest entries', () => {
    const s = new StatusBuilder(undefined, 1);
    for (let i = 0; i < TIMELINE_LIMIT + 5; i++) s.record(`a${i}`, 'Succeeded');
    expect(s.status.timeline).toHaveLength(TIMELINE_LIMIT);
    expect(s.status.timeline?.[0]?.action).toBe('a5');
  });
});

describe('phaseOf', () => {
  const c = (type: string, status: 'True' | 'False', reason = 'R') => ({
    type,
    status,
    reason,
    message: '',
    lastTransitionTime: '',
  });
  it.each([
    [[], 'Pending'],
    [[c('Valid', 'False')], 'Invalid'],
    [[c('Valid', 'True'), c('Contained', 'False', 'InProgress')], 'Pending'],
    [[c('Valid', 'True'), c('Contained', 'True')], 'Contained'],
    [[c('Contained', 'False', 'PodNotFound')], 'Failed'],
    [[c('Contained', 'True'), c('EvidenceCollected', 'False', 'InProgress')], 'Collecting'],
    [[c('Contained', 'True'), c('EvidenceCollected', 'True'), c('EvidenceSealed', 'True')], 'Sealed'],
    [[c('Contained', 'True'), c('EvidenceSealed', 'True'), c('Released', 'True')], 'Released'],
  ] as const)('%j -> %s', (conds, phase) => {
    expect(phaseOf([...conds])).toBe(phase);
  });

  it('queues the Event a timeline step asks for, to be sent after the status is written', () => {
    const b = new StatusBuilder(undefined, 1, clock('2026-01-01T00:00:00Z'));
    b.record('LabelPod', 'Succeeded', 'pod labelled (repaired: label removed)', { type: 'Warning' });
    b.record('IsolateNetwork', 'Succeeded', 'policy created');
    b.record('IsolateNetwork', 'Failed', 'hostNetwork', {
      type: 'Warning',
      reason: 'NetworkIsolationNotEffective',
    });
    expect(b.events).toEqual([
      { type: 'Warning', reason: 'LabelPod', message: 'pod labelled (repaired: label removed)' },
      { type: 'Warning', reason: 'NetworkIsolationNotEffective', message: 'hostNetwork' },
    ]);
  });
});
