import type { KubernetesObject } from '@kubernetes/client-node';
import { describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../../src/observability/logger.js';
import { createRegistry } from '../../../src/observability/metrics.js';
import { Controller } from '../../../src/runtime/controller.js';
import { Informer, type ListWatch } from '../../../src/runtime/informer.js';
import { Manager } from '../../../src/runtime/manager.js';

/** A source whose first list answers only when the test says so. */
function gatedSource(items: KubernetesObject[]) {
  let open = () => {};
  const gate = new Promise<void>((r) => (open = r));
  const source: ListWatch = {
    list: async () => {
      await gate;
      return { items, resourceVersion: '10' };
    },
    watch: async () => () => {},
  };
  return { source, open };
}

const obj = (name: string): KubernetesObject => ({ metadata: { name, resourceVersion: '1' } });

describe('Manager (without leader election)', () => {
  it('is ready and reconciles only after every informer synced', async () => {
    const a = gatedSource([obj('x')]);
    const b = gatedSource([]);
    const reconciled: string[] = [];
    const informerA = new Informer(a.source, { logger: silentLogger });
    const controller = new Controller({
      name: 'c',
      logger: silentLogger,
      registry: createRegistry(),
      reconcile: async (key) => void reconciled.push(key),
    });
    controller.watch(informerA);
    const mgr = new Manager({ logger: silentLogger, exit: () => {} });
    mgr.addInformer(informerA);
    mgr.addInformer(new Informer(b.source, { logger: silentLogger }));
    mgr.addController(controller);

    const started = mgr.start();
    a.open();
    await vi.waitFor(() => expect(informerA.hasSynced()).toBe(true));
    expect(mgr.ready()).toBe(false); // b has not synced yet
    await new Promise((r) => setTimeout(r, 20));
    expect(reconciled).toEqual([]); // x is queued, but no worker runs before all caches synced
    b.open();
    await started;
    expect(mgr.ready()).toBe(true);
    expect(mgr.isLeader()).toBe(true);
    await vi.waitFor(() => expect(reconciled).toEqual(['x']));

    await mgr.stop();
    expect(mgr.ready()).toBe(false);
    controller.enqueue('y');
    await new Promise((r) => setTimeout(r, 20));
    expect(reconciled).toEqual(['x']);
  });

  it('stop() waits for the reconcile in flight', async () => {
    const { source, open } = gatedSource([obj('x')]);
    open();
    let release = () => {};
    const gate = new Promise<void>((r) => (release = r));
    let finished = false;
    const informer = new Informer(source, { logger: silentLogger });
    const controller = new Controller({
      name: 'c',
      logger: silentLogger,
      registry: createRegistry(),
      reconcile: async () => {
        await gate;
        finished = true;
      },
    });
    controller.watch(informer);
    const mgr = new Manager({ logger: silentLogger, exit: () => {} });
    mgr.addInformer(informer);
    mgr.addController(controller);
    await mgr.start();
    await vi.waitFor(() => expect(controller.queue.length).toBe(0));
    const stopping = mgr.stop();
    expect(mgr.stop()).toBe(stopping); // idempotent
    setTimeout(release, 10);
    await stopping;
    expect(finished).toBe(true);
  });

  it('fatal() exits non-zero', () => {
    const exit = vi.fn();
    const mgr = new Manager({ logger: silentLogger, exit });
    mgr.fatal(new Error('invariant broken'));
    expect(exit).toHaveBeenCalledWith(1);
  });
});
