import {
  ApiException,
  HttpMethod,
  ServerConfiguration,
  createConfiguration,
  type KubeConfig,
} from '@kubernetes/client-node';
import { GROUP, VERSION } from '../api/common.js';
import { FORENSIC_CASE } from '../api/forensiccase.js';
import { RESPONSE_POLICY } from '../api/responsepolicy.js';
import type { V1Pod } from '@kubernetes/client-node';
import type { CaseLike } from './cases.js';
import type { PodIsolationApi } from './isolate.js';

/**
 * The few API server calls the intake makes, as plain JSON over the client's authenticated
 * transport (the typed clients cannot send a merge patch with a resourceVersion precondition
 * without ceremony, and they turn some strings into Dates).
 */
export interface CaseApi {
  createCase(body: object): Promise<CaseLike>;
  getCase(name: string): Promise<CaseLike>;
  /** JSON merge patch of the status subresource; a resourceVersion in the body makes it conditional (409 on conflict). */
  patchCaseStatus(name: string, patch: object): Promise<CaseLike>;
  createEvent(namespace: string, event: object): Promise<void>;
  /** Nodes in the cluster. */
  countNodes(): Promise<number>;
}

/** The ResponsePolicy status writes (the InForce condition). */
export interface PolicyStatusApi {
  /** JSON merge patch of the status subresource; a resourceVersion in the body makes it conditional. */
  patchPolicyStatus(name: string, patch: object): Promise<void>;
}

const CASES = `/apis/${GROUP}/${VERSION}/${FORENSIC_CASE.plural}`;
const POLICIES = `/apis/${GROUP}/${VERSION}/${RESPONSE_POLICY.plural}`;
const TIMEOUT_MS = 10_000;

export function kubeCaseApi(kc: KubeConfig): CaseApi & PolicyStatusApi & PodIsolationApi {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('the kubeconfig has no current cluster');
  const config = createConfiguration({ baseServer: new ServerConfiguration(cluster.server, {}) });

  async function call(
    method: HttpMethod,
    path: string,
    body?: object,
    contentType = 'application/json',
    query?: Record<string, string>,
  ): Promise<unknown> {
    const ctx = config.baseServer.makeRequestContext(path, method);
    ctx.setHeaderParam('Accept', 'application/json');
    for (const [k, v] of Object.entries(query ?? {})) ctx.setQueryParam(k, v);
    if (body !== undefined) {
      ctx.setHeaderParam('Content-Type', contentType);
      ctx.setBody(JSON.stringify(body));
    }
    ctx.setSignal(AbortSignal.timeout(TIMEOUT_MS));
    await kc.applySecurityAuthentication(ctx);
    const res = await config.httpApi.send(ctx).toPromise();
    const text = await res.body.text();
    const parsed = parseJson(text);
    if (res.httpStatusCode < 200 || res.httpStatusCode >= 300) {
      throw new ApiException(res.httpStatusCode, `${method} ${path} failed`, parsed, res.headers);
    }
    return parsed;
  }

  const pod = (namespace: string, name: string) =>
    `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`;
  return {
    readPod: async (namespace, name) => {
      try {
        return (await call(HttpMethod.GET, pod(namespace, name))) as V1Pod;
      } catch (err) {
        if (err instanceof ApiException && err.code === 404) return undefined;
        throw err;
      }
    },
    patchPod: async (namespace, name, patch) => {
      await call(HttpMethod.PATCH, pod(namespace, name), patch, 'application/merge-patch+json');
    },
    createNetworkPolicy: async (namespace, body) => {
      await call(
        HttpMethod.POST,
        `/apis/networking.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/networkpolicies`,
        body,
      );
    },
    patchPolicyStatus: async (name, patch) => {
      await call(
        HttpMethod.PATCH,
        `${POLICIES}/${encodeURIComponent(name)}/status`,
        patch,
        'application/merge-patch+json',
      );
    },
    createCase: async (body) => (await call(HttpMethod.POST, CASES, body)) as CaseLike,
    getCase: async (name) => (await call(HttpMethod.GET, `${CASES}/${encodeURIComponent(name)}`)) as CaseLike,
    patchCaseStatus: async (name, patch) =>
      (await call(
        HttpMethod.PATCH,
        `${CASES}/${encodeURIComponent(name)}/status`,
        patch,
        'application/merge-patch+json',
      )) as CaseLike,
    createEvent: async (namespace, event) => {
      await call(HttpMethod.POST, `/api/v1/namespaces/${encodeURIComponent(namespace)}/events`, event);
    },
    countNodes: async () => {
      const list = (await call(HttpMethod.GET, '/api/v1/nodes', undefined, undefined, { limit: '5000' })) as {
        items?: unknown[];
        metadata?: { remainingItemCount?: number };
      };
      return (list.items?.length ?? 0) + (list.metadata?.remainingItemCount ?? 0);
    },
  };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
