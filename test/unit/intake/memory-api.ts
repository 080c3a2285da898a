import { ApiException } from '@kubernetes/client-node';
import type { CaseLike } from '../../../src/intake/cases.js';
import type { CaseApi } from '../../../src/intake/kube.js';

/**
 * An in-memory stand-in for the three API server calls, for unit tests of the engine's pure
 * bookkeeping (coalescing, retries, limits). Integration tests use the real kube-apiserver.
 */
export class MemoryCaseApi implements CaseApi {
  readonly cases = new Map<string, CaseLike & { metadata: { name: string; resourceVersion: string } }>();
  readonly events: object[] = [];
  calls = { create: 0, get: 0, patch: 0 };
  /** While true, every call fails like an unreachable server. */
  down = false;
  nodes = 10;
  private rv = 1;

  private check(): void {
    if (this.down) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
  }

  async createCase(body: object): Promise<CaseLike> {
    this.check();
    this.calls.create++;
    const c = structuredClone(body) as CaseLike & { metadata: { name: string; resourceVersion: string } };
    if (this.cases.has(c.metadata.name))
      throw new ApiException(409, 'AlreadyExists', { message: 'already exists' }, {});
    c.metadata.resourceVersion = String(this.rv++);
    this.cases.set(c.metadata.name, c);
    return structuredClone(c);
  }

  async getCase(name: string): Promise<CaseLike> {
    this.check();
    this.calls.get++;
    const c = this.cases.get(name);
    if (!c) throw new ApiException(404, 'NotFound', { message: 'not found' }, {});
    return structuredClone(c);
  }

  async patchCaseStatus(
    name: string,
    patch: { metadata?: { resourceVersion?: string }; status?: object },
  ): Promise<CaseLike> {
    this.check();
    this.calls.patch++;
    const c = this.cases.get(name);
    if (!c) throw new ApiException(404, 'NotFound', { message: 'not found' }, {});
    const want = patch.metadata?.resourceVersion;
    if (want !== undefined && want !== c.metadata.resourceVersion)
      throw new ApiException(409, 'Conflict', { message: 'conflict' }, {});
    c.status = { ...c.status, ...structuredClone(patch.status) };
    c.metadata.resourceVersion = String(this.rv++);
    return structuredClone(c);
  }

  /** Someone else changes the case (a reconciler): bumps its resourceVersion. */
  touch(name: string, status: object): void {
    const c = this.cases.get(name)!;
    c.status = { ...c.status, ...status };
    c.metadata.resourceVersion = String(this.rv++);
  }

  async createEvent(_ns: string, event: object): Promise<void> {
    this.check();
    this.events.push(event);
  }

  async countNodes(): Promise<number> {
    this.check();
    return this.nodes;
  }
}
