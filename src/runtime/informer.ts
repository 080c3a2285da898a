import {
  ApiException,
  HttpMethod,
  ServerConfiguration,
  createConfiguration,
  type KubeConfig,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import type { Logger } from '../observability/logger.js';
import { apiStatusCode, errorMessage } from './errors.js';

/**
 * List-then-watch of one resource into an in-memory cache, as client-go's reflector and
 * informer do: list (paged) to fill the cache, watch from the list's resourceVersion, relist
 * on 410 Gone or any watch error (after a backoff), and re-deliver every cached object on a
 * periodic resync so that a missed or failed reconcile is retried eventually.
 */

/** The fields the informer relies on; everything else is passed through untouched. */
const objectSchema = z.looseObject({
  metadata: z.looseObject({
    name: z.string().min(1),
    namespace: z.string().optional(),
    resourceVersion: z.string().min(1),
  }),
});

const watchEventSchema = z.object({
  type: z.enum(['ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK', 'ERROR']),
  object: z.unknown(),
});

const bookmarkSchema = z.object({ metadata: z.object({ resourceVersion: z.string().min(1) }) });

/** The Status a watch sends in an ERROR event (410 Gone when the resourceVersion is too old). */
const statusSchema = z.looseObject({ code: z.number().optional(), message: z.string().optional() });

const listSchema = z.looseObject({
  metadata: z.looseObject({ resourceVersion: z.string().min(1), continue: z.string().optional() }),
  items: z.array(z.unknown()),
});

export type WatchEvent = z.infer<typeof watchEventSchema>;

/** Where objects come from: the API server (apiListWatch), or a fake in unit tests. */
export interface ListWatch {
  list(): Promise<{ items: unknown[]; resourceVersion: string }>;
  /**
   * Watches from resourceVersion. onEvent gets each event; onDone is called once when the
   * watch ends (err undefined: the server closed it normally). Resolves to a function that
   * stops the watch.
   */
  watch(
    resourceVersion: string,
    onEvent: (event: WatchEvent) => void,
    onDone: (err?: unknown) => void,
  ): Promise<() => void>;
}

export interface EventHandler<T> {
  onAdd?(obj: T): void;
  onUpdate?(oldObj: T, newObj: T): void;
  /** Receives the last state the cache knew. */
  onDelete?(obj: T): void;
}

export interface InformerOptions {
  logger: Logger;
  /** Re-deliver every cached object as an update this often; 0 turns resync off. */
  resyncMs?: number;
  /** Reconnect backoff after a failed list or watch. */
  backoff?: { baseMs: number; maxMs: number };
}

/** The cache key: `namespace/name` for namespaced objects, `name` for cluster-scoped ones. */
export function objectKey(obj: KubernetesObject): string {
  const { name, namespace } = obj.metadata ?? {};
  if (!name) throw new Error('object has no metadata.name');
  return namespace ? `${namespace}/${name}` : name;
}

/** A watch that lived this long was healthy: its failure starts the backoff from the base again. */
const HEALTHY_WATCH_MS = 10_000;

export class Informer<T extends KubernetesObject = KubernetesObject> {
  private readonly cache = new Map<string, T>();
  private readonly handlers: EventHandler<T>[] = [];
  private readonly log: Logger;
  private readonly resyncMs: number;
  private readonly backoff: { baseMs: number; maxMs: number };
  private resourceVersion = '';
  private synced = false;
  private syncWaiters: Array<() => void> = [];
  private stopController = new AbortController();
  /** Ends the current watch from our side. */
  private endWatch: (() => void) | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly source: ListWatch,
    opts: InformerOptions,
  ) {
    this.log = opts.logger;
    this.resyncMs = opts.resyncMs ?? 0;
    this.backoff = opts.backoff ?? { baseMs: 800, maxMs: 30_000 };
  }

  addHandler(handler: EventHandler<T>): void {
    this.handlers.push(handler);
  }

  get(key: string): T | undefined {
    return this.cache.get(key);
  }

  list(): T[] {
    return [...this.cache.values()];
  }

  /** The resourceVersion the cache is at (of the last list or watch event). */
  lastSyncResourceVersion(): string {
    return this.resourceVersion;
  }

  hasSynced(): boolean {
    return this.synced;
  }

  /** Resolves after the first complete list is in the cache. */
  waitForSync(signal?: AbortSignal): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.syncWaiters.push(resolve);
      signal?.addEventListener('abort', () => reject(new Error('stopped waiting for the informer to sync')), {
        once: true,
      });
    });
  }

  start(): void {
    if (this.running) return;
    this.stopController = new AbortController();
    this.running = this.run(this.stopController.signal);
    if (this.resyncMs > 0) this.resyncTimer = setInterval(() => this.resync(), this.resyncMs);
  }

  async stop(): Promise<void> {
    this.stopController.abort();
    clearInterval(this.resyncTimer);
    this.endWatch?.();
    await this.running;
    this.running = undefined;
  }

  private async run(signal: AbortSignal): Promise<void> {
    let needList = true;
    let failures = 0;
    while (!signal.aborted) {
      let watchStarted = 0;
      try {
        if (needList) {
          await this.relist();
          if (signal.aborted) break;
          needList = false;
        }
        watchStarted = Date.now();
        const end = await this.watchOnce();
        if (end === 'expired') {
          this.log.info({ resourceVersion: this.resourceVersion }, 'watch expired (410 Gone), relisting');
          needList = true;
        } else if (Date.now() - watchStarted < HEALTHY_WATCH_MS) {
          // A server that keeps closing watches at once (e.g. shutting down) must not spin us.
          await sleep(this.backoff.baseMs, undefined, { signal }).catch(() => undefined);
        }
        failures = 0;
      } catch (err) {
        if (signal.aborted) break;
        if (watchStarted > 0 && Date.now() - watchStarted >= HEALTHY_WATCH_MS) failures = 0;
        const delayMs = Math.min(this.backoff.baseMs * 2 ** failures, this.backoff.maxMs);
        failures++;
        // A watch error may have lost events (or the server lost our resourceVersion): relist.
        needList = true;
        this.log.warn(
          { err: errorMessage(err), code: apiStatusCode(err), delayMs },
          'list/watch failed, relisting',
        );
        await sleep(delayMs, undefined, { signal }).catch(() => undefined);
      }
    }
  }

  /** Replaces the cache with a fresh list, delivering the differences as events. */
  private async relist(): Promise<void> {
    const { items, resourceVersion } = await this.source.list();
    const fresh = new Map<string, T>();
    for (const item of items) {
      const obj = this.parse(item);
      if (obj) fresh.set(objectKey(obj), obj);
    }
    const previous = new Map(this.cache);
    this.cache.clear();
    for (const [key, obj] of fresh) this.cache.set(key, obj);
    this.resourceVersion = resourceVersion;
    for (const [key, obj] of previous) if (!fresh.has(key)) this.emit('delete', obj);
    for (const [key, obj] of fresh) {
      const old = previous.get(key);
      if (!old) this.emit('add', obj);
      else if (old.metadata?.resourceVersion !== obj.metadata?.resourceVersion) this.emit('update', obj, old);
    }
    this.log.debug({ count: fresh.size, resourceVersion }, 'listed');
    if (!this.synced) {
      this.synced = true;
      this.syncWaiters.splice(0).forEach((wake) => wake());
    }
  }

  /** Runs one watch to its end: 'closed' by the server or by stop() (resume), or 'expired' (relist). */
  private watchOnce(): Promise<'closed' | 'expired'> {
    return new Promise((resolve, reject) => {
      let settled = false;
      let stopSource: (() => void) | undefined;
      const finish = (outcome: 'closed' | 'expired' | Error) => {
        if (settled) return;
        settled = true;
        this.endWatch = undefined;
        stopSource?.();
        if (outcome instanceof Error) reject(outcome);
        else resolve(outcome);
      };
      this.endWatch = () => finish('closed');
      const onEvent = (event: WatchEvent) => {
        if (settled) return;
        if (event.type === 'ERROR') {
          const status = statusSchema.safeParse(event.object);
          const code = status.success ? status.data.code : undefined;
          if (code === 410) return finish('expired');
          const message = status.success ? status.data.message : undefined;
          return finish(
            Object.assign(new Error(`watch error: ${message ?? 'unknown'}`), { statusCode: code }),
          );
        }
        if (event.type === 'BOOKMARK') {
          // A bookmark carries only a newer resourceVersion to resume from.
          const bookmark = bookmarkSchema.safeParse(event.object);
          if (bookmark.success) this.resourceVersion = bookmark.data.metadata.resourceVersion;
          return;
        }
        const obj = this.parse(event.object);
        if (!obj) return;
        this.resourceVersion = obj.metadata?.resourceVersion ?? this.resourceVersion;
        const key = objectKey(obj);
        if (event.type === 'DELETED') {
          const last = this.cache.get(key) ?? obj;
          this.cache.delete(key);
          this.emit('delete', last);
        } else {
          const old = this.cache.get(key);
          this.cache.set(key, obj);
          if (old) this.emit('update', obj, old);
          else this.emit('add', obj);
        }
      };
      const onDone = (err?: unknown) => finish(err ? toError(err) : 'closed');
      this.source.watch(this.resourceVersion, onEvent, onDone).then(
        (stop) => {
          // The watch may have ended, or stop() been called, before it was set up.
          if (settled) stop();
          else stopSource = stop;
        },
        (err: unknown) => finish(toError(err)),
      );
    });
  }

  private resync(): void {
    if (!this.synced) return;
    for (const obj of this.cache.values()) this.emit('update', obj, obj);
  }

  private parse(raw: unknown): T | undefined {
    const parsed = objectSchema.safeParse(raw);
    if (parsed.success) return raw as T;
    this.log.warn({ issues: parsed.error.issues }, 'ignoring an object without name or resourceVersion');
    return undefined;
  }

  private emit(kind: 'add' | 'update' | 'delete', obj: T, old?: T): void {
    for (const h of this.handlers) {
      try {
        if (kind === 'add') h.onAdd?.(obj);
        else if (kind === 'update') h.onUpdate?.(old ?? obj, obj);
        else h.onDelete?.(obj);
      } catch (err) {
        // Handlers only enqueue keys; one that throws must not stop the others or the watch.
        this.log.error({ err: errorMessage(err), key: objectKey(obj), kind }, 'event handler failed');
      }
    }
  }
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

export interface ApiListWatchOptions {
  labelSelector?: string;
  fieldSelector?: string;
  /** Items per list page. */
  pageSize?: number;
}

/**
 * Lists and watches a collection path of the API server, e.g. `/api/v1/namespaces/x/configmaps`
 * or `/apis/forensics.amber.io/v1alpha1/forensiccases`. Objects stay plain JSON, exactly as the
 * server sent them, in both list and watch (the typed clients would turn some strings into Dates
 * in lists only).
 */
export function apiListWatch(kc: KubeConfig, path: string, opts: ApiListWatchOptions = {}): ListWatch {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('the kubeconfig has no current cluster');
  const config = createConfiguration({ baseServer: new ServerConfiguration(cluster.server, {}) });
  const selectors = { labelSelector: opts.labelSelector, fieldSelector: opts.fieldSelector };

  // Every request goes through kc's authentication (and its pooled connections, src/kube/config.ts).
  async function send(query: Record<string, string | undefined>, signal?: AbortSignal) {
    const ctx = config.baseServer.makeRequestContext(path, HttpMethod.GET);
    ctx.setHeaderParam('Accept', 'application/json');
    for (const [k, v] of Object.entries(query)) if (v !== undefined) ctx.setQueryParam(k, v);
    if (signal) ctx.setSignal(signal);
    await kc.applySecurityAuthentication(ctx);
    const res = await config.httpApi.send(ctx).toPromise();
    if (res.httpStatusCode !== 200) {
      const text = await res.body.text();
      throw new ApiException(res.httpStatusCode, `GET ${path} failed`, parseJson(text), res.headers);
    }
    return res;
  }

  return {
    async list() {
      const items: unknown[] = [];
      let cont: string | undefined;
      let resourceVersion: string;
      do {
        const res = await send({ ...selectors, limit: String(opts.pageSize ?? 500), continue: cont });
        const page = listSchema.parse(JSON.parse(await res.body.text()));
        items.push(...page.items);
        resourceVersion = page.metadata.resourceVersion;
        cont = page.metadata.continue || undefined;
      } while (cont);
      return { items, resourceVersion };
    },

    // Not client-node's Watch: since 2.0 it aborts a watch after 30 s without data, and a quiet
    // resource sends nothing but a bookmark about once a minute, so every quiet watch would end
    // in a TimeoutError and a relist.
    async watch(resourceVersion, onEvent, onDone) {
      // The server ends the watch after this; a random 5-10 min spreads reconnects like client-go.
      const timeoutSeconds = Math.floor(300 + Math.random() * 300);
      const abort = new AbortController();
      // Silent well past the server's own end: the connection is dead, not the watch quiet.
      const deadline = setTimeout(
        () => abort.abort(new Error(`watch of ${path} silent beyond its ${timeoutSeconds} s timeout`)),
        (timeoutSeconds + 30) * 1000,
      );
      deadline.unref();
      let res;
      try {
        res = await send(
          {
            ...selectors,
            watch: 'true',
            resourceVersion,
            allowWatchBookmarks: 'true',
            timeoutSeconds: String(timeoutSeconds),
          },
          abort.signal,
        );
      } catch (err) {
        clearTimeout(deadline);
        throw err;
      }
      const body = res.body.stream();
      void readLines(body, (line) => {
        const event = watchEventSchema.safeParse(parseJson(line));
        if (event.success) onEvent(event.data);
      })
        .then(
          () => onDone(),
          (err: unknown) => onDone(abort.signal.aborted && isAbort(err) ? undefined : err),
        )
        .finally(() => clearTimeout(deadline));
      return () => abort.abort();
    },
  };
}

/** Calls onLine for each newline-terminated line of a UTF-8 stream (a watch: one JSON event a line). */
export async function readLines(
  body: ReadableStream<Uint8Array> | null,
  onLine: (line: string) => void,
): Promise<void> {
  if (!body) return;
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    pending += value;
    let end: number;
    while ((end = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, end);
      pending = pending.slice(end + 1);
      if (line.trim()) onLine(line);
    }
  }
}

function isAbort(err: unknown): boolean {
  return err instanceof Error && err.name === 'AbortError';
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
