import type { KubeConfig, KubernetesObject } from '@kubernetes/client-node';
import { request, type RequestOptions } from 'node:https';

/** A refusal by the API server: its HTTP status and the message of its Status object. */
export class ApiRefusal extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

interface ApiResource {
  name: string;
  kind: string;
  namespaced: boolean;
}

/**
 * Plain JSON requests to the API server, as kubectl makes them. @kubernetes/client-node's
 * generic object API serializes each object through its typed models first, which silently
 * drops fields the models spell otherwise (JSONSchemaProps' `default` and `enum` become
 * `_default` and `_enum`, so a CRD loses its defaults and enums) and any misspelt field, so what
 * reached the server would not be what the files say.
 */
export class RawApi {
  private readonly resources = new Map<string, ApiResource[]>();

  constructor(private readonly kc: KubeConfig) {}

  /** `kubectl apply --server-side --field-validation=Strict` (unknown fields are refused). */
  apply(obj: KubernetesObject, opts: { dryRun?: boolean } = {}): Promise<KubernetesObject> {
    const query = new URLSearchParams({
      fieldManager: 'amber-deploy-test',
      force: 'true',
      fieldValidation: 'Strict',
    });
    if (opts.dryRun) query.set('dryRun', 'All');
    return this.path(obj, true).then((path) =>
      this.request('PATCH', `${path}?${query}`, obj, 'application/apply-patch+yaml'),
    );
  }

  /** Create with server-side dry-run: every admission check runs, nothing is stored. */
  dryRunCreate(obj: KubernetesObject): Promise<KubernetesObject> {
    return this.path(obj, false).then((path) =>
      this.request('POST', `${path}?dryRun=All&fieldValidation=Strict`, obj, 'application/json'),
    );
  }

  read(obj: KubernetesObject): Promise<KubernetesObject> {
    return this.path(obj, true).then((path) => this.request('GET', path));
  }

  /** The object's URL path, found by discovery like kubectl's REST mapper. */
  private async path(obj: KubernetesObject, withName: boolean): Promise<string> {
    const apiVersion = obj.apiVersion ?? '';
    const base = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    let list = this.resources.get(base);
    const find = () => list?.find((r) => r.kind === obj.kind && !r.name.includes('/'));
    if (!find()) {
      // Refetched on a miss: a CRD's resources appear some time after it is created.
      list = ((await this.request('GET', base)) as unknown as { resources: ApiResource[] }).resources;
      this.resources.set(base, list);
    }
    const resource = find();
    if (!resource) throw new Error(`the API server serves no ${obj.kind} in ${apiVersion}`);
    const ns = resource.namespaced ? `/namespaces/${obj.metadata?.namespace ?? 'default'}` : '';
    return `${base}${ns}/${resource.name}${withName ? `/${obj.metadata?.name}` : ''}`;
  }

  private async request(
    method: string,
    path: string,
    body?: unknown,
    contentType?: string,
  ): Promise<KubernetesObject> {
    const opts: RequestOptions = {};
    await this.kc.applyToHTTPSOptions(opts);
    opts.method = method;
    opts.headers = {
      ...opts.headers,
      Accept: 'application/json',
      ...(contentType && { 'Content-Type': contentType }),
    };
    const url = new URL(path, this.kc.getCurrentCluster()!.server);
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = request(url, opts, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
    const json = JSON.parse(text) as KubernetesObject & { message?: string };
    if (status >= 400) throw new ApiRefusal(status, json.message ?? text);
    return json;
  }
}
