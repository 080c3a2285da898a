import type { KubernetesObject } from '@kubernetes/client-node';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../../src/observability/logger.js';
import { Informer, objectKey, type ListWatch, type WatchEvent } from '../../../src/runtime/informer.js';

/** An in-memory stand-in for the list/watch endpoints: the test decides what each call sees. */
class FakeSource implements ListWatch {
  objects = new Map<string, KubernetesObject>();
  resourceVersion = 1;
  lists = 0;
  failNextList: Error | undefined;
  watches: Array<{
    rv: string;
    send: (e: WatchEvent) => void;
    end: (err?: unknown) => void;
    stopped: boolean;
  }> = [];

  async list() {
    this.lists++;
    if (this.failNextList) {
      const err = this.failNextList;
      this.failNextList = undefined;
      throw err;
    }
    return { items: [...this.objects.values()], resourceVersion: String(this.resourceVersion) };
  }

  async watch(rv: string, onEvent: (e: WatchEvent) => void, onDone: (err?: unknown) => void) {
    const w = { rv, send: onEvent, end: onDone, stopped: false };
    this.watches.push(w);
    return () => {
      w.stopped = true;
    };
  }

  /** Changes the "server" state without telling any watch (as if the event was missed). */
  put(name: string, data: Record<string, string> = {}): KubernetesObject {
    const obj = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name, resourceVersion: String(++this.resourceVersion) },
      data,
    };
    this.objects.set(name, obj);
    return obj;
  }

  remove(name: string): KubernetesObject {
    const obj = this.objects.get(name)!;
    this.objects.delete(name);
    this.resourceVersion++;
    return obj;
  }

  get current() {
    const w = this.watches.at(-1);
    if (!w) throw new Error('no watch yet');
    return w;
  }
}

function recorder(informer: Informer) {
  const events: string[] = [];
  informer.addHandler({
    onAdd: (o) => events.push(`add ${o.metadata?.name}`),
    onUpdate: (old, cur) =>
      events.push(
        `update ${cur.metadata?.name} ${old.metadata?.resourceVersion}->${cur.metadata?.resourceVersion}`,
      ),
    onDelete: (o) => events.push(`delete ${o.metadata?.name}@${o.metadata?.resourceVersion}`),
  });
  return events;
}

const informers: Informer[] = [];
function make(source: FakeSource, resyncMs = 0) {
  const informer = new Informer(source, { logger: silentLogger, resyncMs, backoff: { baseMs: 1, maxMs: 5 } });
  informers.push(informer);
  return informer;
}

afterEach(async () => {
  await Promise.all(informers.splice(0).map((i) => i.stop()));
  vi.useRealTimers();
});

describe('Informer', () => {
  it('lists, fills the cache, syncs, then watches from the list resourceVersion', async () => {
    const src = new FakeSource();
    src.put('a');
    src.put('b');
    const inf = make(src);
    const events = recorder(inf);
    expect(inf.hasSynced()).toBe(false);
    inf.start();
    await inf.waitForSync();
    expect(inf.hasSynced()).toBe(true);
    expect(events).toEqual(['add a', 'add b']);
    expect(inf.list().map(objectKey).sort()).toEqual(['a', 'b']);
    expect(inf.get('a')?.metadata?.resourceVersion).toBe('2');
    await vi.waitFor(() => expect(src.watches).toHaveLength(1));
    expect(src.current.rv).toBe('3');
  });

  it('applies watch events to the cache and tells the handlers', async () => {
    const src = new FakeSource();
    const a = src.put('a');
    const inf = make(src);
    const events = recorder(inf);
    inf.start();
    await vi.waitFor(() => expect(src.watches).toHaveLength(1));
    src.current.send({ type: 'ADDED', object: src.put('b') });
    src.current.send({ type: 'MODIFIED', object: src.put('a', { k: 'v' }) });
    src.current.send({
      type: 'DELETED',
      object: { ...a, metadata: { ...a.metadata, resourceVersion: '9' } },
    });
    expect(events).toEqual(['add a', 'add b', 'update a 2->4', 'delete a@4']);
    expect(inf.get('a')).toBeUndefined();
    expect(inf.get('b')).toBeDefined();
    expect(inf.lastSyncResourceVersion()).toBe('9');
  });

  it('takes the resourceVersion of bookmarks without events', async () => {
    const src = new FakeSource();
    const inf = make(src);
    const events = recorder(inf);
    inf.start();
    await vi.waitFor(() => expect(src.watches).toHaveLength(1));
    src.current.send({
      type: 'BOOKMARK',
      object: { kind: 'ConfigMap', metadata: { resourceVersion: '42' } },
    });
    expect(inf.lastSyncResourceVersion()).toBe('42');
    expect(events).toEqual([]);
  });

  it('relists on 410 Gone and delivers exactly what it missed', async () => {
    const src = new FakeSource();
    src.put('kept');
    src.put('changed');
    src.put('deleted');
    const inf = make(src);
    const events = recorder(inf);
    inf.start();
    await vi.waitFor(() => expect(src.watches).toHaveLength(1));
    events.length = 0;
    // Missed while the watch was away:
    src.put('changed', { new: 'yes' });
    src.remove('deleted');
    src.put('added');
    src.current.send({
      type: 'ERROR',
      object: { kind: 'Status', code: 410, message: 'too old resource version' },
    });
    await vi.waitFor(() => expect(src.watches).toHaveLength(2));
    expect(src.watches[0]!.stopped).toBe(true);
    expect(src.lists).toBe(2);
    expect(events.sort()).toEqual(['add added', 'delete deleted@4', 'update changed 3->5']);
    expect(src.current.rv).toBe(String(src.resourceVersion));
  });

  it('relists after a watch error, with backoff, and retries a failed list', async () => {
    const src = new FakeSource();
    src.put('a');
    const inf = make(src);
    const events = recorder(inf);
    inf.start();
    await vi.waitFor(() => expect(src.watches).toHaveLength(1));
    src.remove('a');
    src.failNextList = new Error('connect ECONNREFUSED');
    src.current.end(new Error('socket hang up'));
    await vi.waitFor(() => expect(src.watches).toHaveLength(2));
    expect(src.lists).toBe(3); // the first list, the failed one, the one that worked
    expect(events).toEqual(['add a', 'delete a@2']);
  });

  it('resumes from its resourceVersion, without a relist, when the server closes the watch', async () => {
    const src = new FakeSource();
    const inf = make(src);
    inf.start();
    await vi.waitFor(() => expect(src.watches).toHaveLength(1));
    src.current.send({ type: 'ADDED', object: src.put('a') });
    src.current.end();
    await vi.waitFor(() => expect(src.watches).toHaveLength(2));
    expect(src.lists).toBe(1);
    expect(src.current.rv).toBe('2');
  });

  it('a non-410 ERROR event is a watch error: relist', async () => {
    const src = new FakeSource();
    const inf = make(src);
    inf.start();
    await vi.waitFor(() => expect(src.watches).toHaveLength(1));
    src.current.send({ type: 'ERROR', object: { kind: 'Status', code: 500, message: 'etcd down' } });
    await vi.waitFor(() => expect(src.watches).toHaveLength(2));
    expect(src.lists).toBe(2);
  });

  it('resync re-delivers every cached object as an update', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const src = new FakeSource();
    src.put('a');
    src.put('b');
    const inf = make(src, 60_000);
    const events = recorder(inf);
    inf.start();
    await inf.waitForSync();
    events.length = 0;
    vi.advanceTimersByTime(60_000);
    expect(events.sort()).toEqual(['update a 2->2', 'update b 3->3']);
    vi.advanceTimersByTime(60_000);
    expect(events).toHaveLength(4);
  });

  it('a handler that throws does not keep the others from their events', async () => {
    const src = new FakeSource();
    src.put('a');
    const inf = make(src);
    inf.addHandler({
      onAdd: () => {
        throw new Error('boom');
      },
    });
    const events = recorder(inf);
    inf.start();
    await inf.waitForSync();
    expect(events).toEqual(['add a']);
  });

  it('ignores objects without a name', async () => {
    const src = new FakeSource();
    const inf = make(src);
    const events = recorder(inf);
    inf.start();
    await vi.waitFor(() => expect(src.watches).toHaveLength(1));
    src.current.send({ type: 'ADDED', object: { metadata: { resourceVersion: '7' } } });
    expect(events).toEqual([]);
    expect(inf.list()).toEqual([]);
  });

  it('stop() ends the watch and lists no more', async () => {
    const src = new FakeSource();
    const inf = make(src);
    inf.start();
    await vi.waitFor(() => expect(src.watches).toHaveLength(1));
    const stopping = inf.stop();
    src.current.end(); // the aborted watch reports its end
    await stopping;
    expect(src.current.stopped).toBe(true);
    expect(src.lists).toBe(1);
    expect(src.watches).toHaveLength(1);
  });

  it('waitForSync can be given up', async () => {
    const src = new FakeSource();
    const inf = make(src);
    const ac = new AbortController();
    const waiting = inf.waitForSync(ac.signal);
    ac.abort();
    await expect(waiting).rejects.toThrow(/stopped waiting/);
  });
});

describe('objectKey', () => {
  it('is namespace/name for namespaced objects and name for cluster-scoped ones', () => {
    expect(objectKey({ metadata: { name: 'a', namespace: 'ns' } })).toBe('ns/a');
    expect(objectKey({ metadata: { name: 'case-1' } })).toBe('case-1');
    expect(() => objectKey({ metadata: {} })).toThrow(/no metadata.name/);
  });
});
