import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { WorkQueue } from '../../../src/runtime/workqueue.js';

/** Resolves with what a pending promise settled to, or 'pending' if it has not (yet). */
async function peek<T>(p: Promise<T>): Promise<T | 'pending'> {
  return Promise.race([p, new Promise<'pending'>((r) => setImmediate(() => r('pending')))]);
}

describe('WorkQueue', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('hands keys out in the order they were added', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.add('b');
    expect(await q.get()).toBe('a');
    expect(await q.get()).toBe('b');
  });

  it('merges duplicate keys waiting in the queue', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.add('b');
    q.add('a');
    expect(q.length).toBe(2);
    expect(await q.get()).toBe('a');
    expect(await q.get()).toBe('b');
    expect(await peek(q.get())).toBe('pending');
  });

  it('a waiting get() receives the next added key', async () => {
    const q = new WorkQueue();
    const next = q.get();
    expect(await peek(next)).toBe('pending');
    q.add('x');
    expect(await next).toBe('x');
    expect(q.length).toBe(0);
  });

  it('never hands a key being processed to a second worker', async () => {
    const q = new WorkQueue();
    q.add('a');
    expect(await q.get()).toBe('a');
    q.add('a'); // changed while a worker has it
    q.add('a');
    const second = q.get();
    expect(await peek(second)).toBe('pending');
    expect(q.length).toBe(0);
    q.done('a');
    expect(await second).toBe('a'); // re-queued once, after done()
    q.done('a');
    expect(await peek(q.get())).toBe('pending');
  });

  it('done() without a re-add does not re-queue', async () => {
    const q = new WorkQueue();
    q.add('a');
    await q.get();
    q.done('a');
    expect(q.length).toBe(0);
  });

  it('other keys flow while one is being processed', async () => {
    const q = new WorkQueue();
    q.add('a');
    await q.get();
    q.add('a');
    q.add('b');
    expect(await q.get()).toBe('b');
  });

  it('backs off per key exponentially up to the maximum', () => {
    const q = new WorkQueue({ baseDelayMs: 5, maxDelayMs: 100 });
    const delays = Array.from({ length: 7 }, () => q.addRateLimited('a'));
    expect(delays).toEqual([5, 10, 20, 40, 80, 100, 100]);
    expect(q.numRequeues('a')).toBe(7);
    expect(q.addRateLimited('b')).toBe(5); // b has its own count
  });

  it('a rate-limited key becomes ready only after its delay', async () => {
    const q = new WorkQueue({ baseDelayMs: 5, maxDelayMs: 1000 });
    q.addRateLimited('a');
    q.addRateLimited('a'); // second failure: 10 ms, but the earlier 5 ms delay wins
    vi.advanceTimersByTime(4);
    expect(q.length).toBe(0);
    vi.advanceTimersByTime(1);
    expect(q.length).toBe(1);
    expect(await q.get()).toBe('a');
  });

  it('forget() resets the backoff', () => {
    const q = new WorkQueue({ baseDelayMs: 5, maxDelayMs: 1000 });
    q.addRateLimited('a');
    q.addRateLimited('a');
    q.forget('a');
    expect(q.numRequeues('a')).toBe(0);
    expect(q.addRateLimited('a')).toBe(5);
  });

  it('does not overflow after very many failures', () => {
    const q = new WorkQueue({ baseDelayMs: 5, maxDelayMs: 300_000 });
    let last = 0;
    for (let i = 0; i < 2000; i++) last = q.addRateLimited('a');
    expect(last).toBe(300_000);
  });

  it('addAfter keeps the earliest of two pending delays', () => {
    const q = new WorkQueue();
    q.addAfter('a', 1000);
    q.addAfter('a', 100);
    q.addAfter('a', 500);
    vi.advanceTimersByTime(100);
    expect(q.length).toBe(1);
    vi.advanceTimersByTime(1000);
    expect(q.length).toBe(1); // the later timers were dropped, nothing added twice
  });

  it('addAfter with no delay adds at once', () => {
    const q = new WorkQueue();
    q.addAfter('a', 0);
    expect(q.length).toBe(1);
  });

  it('a delayed key that is already queued is merged when it fires', async () => {
    const q = new WorkQueue();
    q.addAfter('a', 10);
    q.add('a');
    vi.advanceTimersByTime(10);
    expect(q.length).toBe(1);
    expect(await q.get()).toBe('a');
  });

  it('a delayed key that fires while processing waits for done()', async () => {
    const q = new WorkQueue();
    q.add('a');
    await q.get();
    q.addAfter('a', 10);
    vi.advanceTimersByTime(10);
    expect(q.length).toBe(0);
    q.done('a');
    expect(q.length).toBe(1);
  });

  it('rejects a nonsensical backoff', () => {
    expect(() => new WorkQueue({ baseDelayMs: 0 })).toThrow(/invalid backoff/);
    expect(() => new WorkQueue({ baseDelayMs: 10, maxDelayMs: 5 })).toThrow(/invalid backoff/);
  });

  describe('shutDown', () => {
    it('releases waiting workers and refuses new keys', async () => {
      const q = new WorkQueue();
      const waiting = q.get();
      await q.shutDown();
      expect(await waiting).toBeUndefined();
      q.add('a');
      q.addAfter('a', 10);
      expect(q.length).toBe(0);
      expect(await q.get()).toBeUndefined();
    });

    it('drops queued and delayed keys', async () => {
      const q = new WorkQueue();
      q.add('a');
      q.addAfter('b', 10);
      await q.shutDown();
      expect(q.length).toBe(0);
      vi.advanceTimersByTime(100);
      expect(q.length).toBe(0);
      expect(vi.getTimerCount()).toBe(0);
    });

    it('drains: resolves only after every key in flight is done', async () => {
      const q = new WorkQueue();
      q.add('a');
      q.add('b');
      await q.get();
      await q.get();
      q.add('a'); // dirty while processing: must not come back after shutdown
      const drained = q.shutDown();
      expect(q.isShuttingDown).toBe(true);
      q.done('a');
      expect(await peek(drained)).toBe('pending');
      q.done('b');
      await drained;
      expect(q.length).toBe(0);
    });
  });
});
