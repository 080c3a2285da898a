import { KubeConfig, type RequestContext } from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import type { AgentOptions, RequestOptions } from 'node:https';
import { Agent, ProxyAgent, type Dispatcher } from 'undici';

/**
 * A KubeConfig whose requests share connections to the API server.
 *
 * @kubernetes/client-node 2.x sends requests with undici's fetch, but its
 * applySecurityAuthentication builds a new undici Agent for every request: each call opens its
 * own connection and pays a full TLS handshake, and with a hundred cases at once the handshakes,
 * not the API server, set the pace (docs/adr/0016-node-24-and-client-node-2.md). Here one
 * dispatcher is kept for the current TLS material (CA, client certificate, server name, proxy)
 * and replaced, the old one closed gracefully, when that material changes (a rotated
 * certificate). The dispatcher speaks HTTP/2 where the server offers it, as the API server does,
 * so concurrent requests, watches included, share one TLS connection. Bearer tokens and other
 * credentials travel in headers and are still read on every request, as the library reads them.
 */
export class PooledKubeConfig extends KubeConfig {
  private pooled: { key: string; dispatcher: Dispatcher } | undefined;

  /** http2: false keeps to HTTP/1.1 with up to 32 keep-alive connections (bench/kube-connections.ts). */
  constructor(private readonly pool: { http2?: boolean } = {}) {
    super();
  }

  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    const cluster = this.getCurrentCluster();
    // The library's own reading of the kubeconfig: TLS material, authenticators (exec, OIDC,
    // token files) and their headers, basic auth as `auth`.
    const options: RequestOptions = {};
    await this.applyToHTTPSOptions(options);
    if (options.auth) {
      context.setHeaderParam('Authorization', `Basic ${Buffer.from(options.auth).toString('base64')}`);
    }
    for (const [name, value] of Object.entries(options.headers ?? {})) {
      if (value !== undefined) context.setHeaderParam(name, String(value));
    }
    const tls: AgentOptions = {};
    for (const name of [
      'ca',
      'cert',
      'key',
      'pfx',
      'passphrase',
      'rejectUnauthorized',
      'servername',
    ] as const) {
      if (options[name] !== undefined) Object.assign(tls, { [name]: options[name] });
    }
    const plan = this.createDispatcherOptions(cluster, tls);
    if (plan.type === 'none') return; // plain HTTP: undici's global dispatcher pools already
    if (plan.type === 'socks') return super.applySecurityAuthentication(context); // not pooled
    context.setDispatcher(this.dispatcherFor(plan));
  }

  /** Closes the pooled connections once their requests are done (watches end with them). */
  async close(): Promise<void> {
    const pooled = this.pooled;
    this.pooled = undefined;
    await pooled?.dispatcher.close();
  }

  private dispatcherFor(plan: PoolablePlan): Dispatcher {
    const key = planKey(plan);
    if (this.pooled?.key === key) return this.pooled.dispatcher;
    const previous = this.pooled?.dispatcher;
    const http = this.pool.http2 === false ? { allowH2: false, connections: 32 } : { allowH2: true };
    const dispatcher =
      plan.type === 'proxy'
        ? new ProxyAgent({ uri: plan.uri, requestTls: plan.requestTls, connect: plan.connect, ...http })
        : new Agent({ connect: plan.connect, ...http });
    this.pooled = { key, dispatcher };
    // Requests already sent on the old one finish there; only new ones use the new material.
    previous?.close().catch(() => undefined);
    return dispatcher;
  }
}

type PoolablePlan = Extract<ReturnType<KubeConfig['createDispatcherOptions']>, { type: 'agent' | 'proxy' }>;

/** A digest of everything that shapes a connection (certificates and keys as their bytes). */
function planKey(plan: PoolablePlan): string {
  return createHash('sha256').update(JSON.stringify(plan)).digest('hex');
}

/** Loads a kubeconfig file, or the in-cluster / $KUBECONFIG configuration. */
export function loadKubeConfig(path?: string): PooledKubeConfig {
  const kc = new PooledKubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault();
  return kc;
}
