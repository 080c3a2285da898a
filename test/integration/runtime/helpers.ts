import { KubeConfig } from '@kubernetes/client-node';
import type { Informer } from '../../../src/runtime/informer.js';

/** The same credentials, pointed at another address (a CuttableProxy in front of the server). */
export function viaPort(kc: KubeConfig, port: number): KubeConfig {
  const out = new KubeConfig();
  out.loadFromOptions({
    clusters: kc.clusters.map((c) => ({ ...c, server: `https://127.0.0.1:${port}` })),
    users: kc.users,
    contexts: kc.contexts,
    currentContext: kc.currentContext,
  });
  return out;
}

export function serverPort(kc: KubeConfig): number {
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new Error('no current cluster');
  return Number(new URL(server).port);
}

/** Every handler call as a line, e.g. "add cm-1" or "update cm-1 v=2", for readable assertions. */
export function recordEvents(informer: Informer): string[] {
  const events: string[] = [];
  const describe = (o: { metadata?: { name?: string } } & { data?: Record<string, string> }) =>
    [o.metadata?.name, ...Object.entries(o.data ?? {}).map(([k, v]) => `${k}=${v}`)].join(' ');
  informer.addHandler({
    onAdd: (o) => events.push(`add ${describe(o)}`),
    onUpdate: (old, cur) => {
      if (old.metadata?.resourceVersion !== cur.metadata?.resourceVersion)
        events.push(`update ${describe(cur)}`);
    },
    onDelete: (o) => events.push(`delete ${o.metadata?.name}`),
  });
  return events;
}
