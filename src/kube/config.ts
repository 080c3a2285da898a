import { KubeConfig } from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import { Agent } from 'node:https';

type RequestContext = Parameters<KubeConfig['applySecurityAuthentication']>[0];

/**
 * A KubeConfig whose requests share keep-alive connections. @kubernetes/client-node 1.x makes a
 * new https.Agent for every request, so each call pays a full TLS handshake: with a hundred
 * cases at once, handshakes, not the API server, set the pace. Here the agent is kept per set
 * of TLS options (a rotated certificate gets a new one); bearer tokens travel in headers and
 * are still read on every request.
 */
export class PooledKubeConfig extends KubeConfig {
  private readonly agents = new Map<string, Agent>();

  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    await super.applySecurityAuthentication(context);
    const fresh = context.getAgent();
    if (!(fresh instanceof Agent)) return; // a proxy agent: leave it as it is
    const o = fresh.options;
    const key = createHash('sha256')
      .update(
        JSON.stringify(
          [o.ca, o.cert, o.key, o.pfx, o.rejectUnauthorized, o.servername].map((v) =>
            v === undefined ? null : String(v),
          ),
        ),
      )
      .digest('hex');
    let agent = this.agents.get(key);
    if (!agent) {
      agent = new Agent({ ...o, keepAlive: true, maxSockets: 32, maxFreeSockets: 32 });
      this.agents.set(key, agent);
    }
    context.setAgent(agent);
  }
}

/** Loads a kubeconfig file, or the in-cluster / $KUBECONFIG configuration. */
export function loadKubeConfig(path?: string): PooledKubeConfig {
  const kc = new PooledKubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault();
  return kc;
}
