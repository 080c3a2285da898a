import type { KubeConfig } from '@kubernetes/client-node';
import { PooledKubeConfig } from '../../src/kube/config.js';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { freePort } from './ports.js';

/**
 * A TCP pass-through on 127.0.0.1 in front of a server (the API server: TLS goes through
 * untouched; MinIO), that a test can cut: cut() drops every open connection and refuses new
 * ones until restore(). It makes one client lose the server while others (and the server)
 * carry on.
 */
export class CuttableProxy {
  private readonly sockets = new Set<Socket>();
  private cutOff = false;
  /** Connections refused while cut: a client's attempts to reconnect, counted. */
  refused = 0;
  /** Connections passed through: how many a client opened (src/kube/config.ts pools them). */
  accepted = 0;

  private readonly server: Server;

  private constructor(
    readonly port: number,
    targetPort: number,
  ) {
    this.server = createServer((client) => {
      if (this.cutOff) {
        this.refused++;
        return client.destroy();
      }
      this.accepted++;
      const upstream = createConnection({ host: '127.0.0.1', port: targetPort });
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
  }

  static async start(targetPort: number): Promise<CuttableProxy> {
    const proxy = new CuttableProxy(await freePort(), targetPort);
    await new Promise<void>((resolve) => proxy.server.listen(proxy.port, '127.0.0.1', resolve));
    return proxy;
  }

  cut(): void {
    this.cutOff = true;
    for (const s of this.sockets) s.destroy();
  }

  restore(): void {
    this.cutOff = false;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A copy of a client configuration that talks to the API server through `proxy`. */
export function throughProxy(kc: KubeConfig, proxy: CuttableProxy): KubeConfig {
  const copy = new PooledKubeConfig();
  copy.loadFromOptions({
    clusters: kc.clusters.map((c) => ({ ...c, server: `https://127.0.0.1:${proxy.port}` })),
    users: kc.users,
    contexts: kc.contexts,
    currentContext: kc.currentContext,
  });
  return copy;
}
