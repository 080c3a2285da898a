/**
 * A work queue of string keys with the guarantees controller-runtime's queue gives
 * (k8s.io/client-go/util/workqueue):
 *
 * - a key waiting in the queue is held once, however often it is added;
 * - a key being processed is never handed to a second worker: if it is added meanwhile it is
 *   marked dirty and goes back into the queue when the worker calls done();
 * - each key has its own exponential backoff (addRateLimited), reset by forget();
 * - addAfter(key, ms) adds later; of two pending delays for one key the earlier wins.
 */

export interface WorkQueueOptions {
  /** First retry delay; doubles on each failure of the same key. */
  baseDelayMs?: number;
  /** Upper bound of a retry delay. */
  maxDelayMs?: number;
}

export const DEFAULT_BASE_DELAY_MS = 5;
export const DEFAULT_MAX_DELAY_MS = 5 * 60_000;

export class WorkQueue {
  private readonly ready: string[] = [];
  /** Keys that need processing: waiting in `ready`, or re-added while being processed. */
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly waiting = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly failures = new Map<string, number>();
  private readonly getters: Array<(key: string | undefined) => void> = [];
  private readonly idleWaiters: Array<() => void> = [];
  private shuttingDown = false;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;

  constructor(opts: WorkQueueOptions = {}) {
    this.baseDelayMs = opts.baseDelayMs ?? DEFAULT_BASE_DELAY_MS;
    this.maxDelayMs = opts.maxDelayMs ?? DEFAULT_MAX_DELAY_MS;
    if (this.baseDelayMs <= 0 || this.maxDelayMs < this.baseDelayMs) {
      throw new Error(`invalid backoff: baseDelayMs=${this.baseDelayMs} maxDelayMs=${this.maxDelayMs}`);
    }
  }

  /** Keys ready to be handed out (the queue-depth metric); delayed keys are not counted. */
  get length(): number {
    return this.ready.length;
  }

  get isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.dirty.add(key);
    if (this.processing.has(key)) return; // done() puts it back
    this.push(key);
  }

  addAfter(key: string, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) return this.add(key);
    const at = Date.now() + delayMs;
    const pending = this.waiting.get(key);
    if (pending && pending.at <= at) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      this.waiting.delete(key);
      this.add(key);
    }, delayMs);
    this.waiting.set(key, { at, timer });
  }

  /** Adds the key after its backoff delay and counts one more failure for it. */
  addRateLimited(key: string): number {
    const failures = this.failures.get(key) ?? 0;
    this.failures.set(key, failures + 1);
    // 2 ** failures overflows to Infinity long after it passed maxDelayMs, so min() is enough.
    const delay = Math.min(this.baseDelayMs * 2 ** failures, this.maxDelayMs);
    this.addAfter(key, delay);
    return delay;
  }

  /** Resets the key's backoff (call after it was processed successfully). */
  forget(key: string): void {
    this.failures.delete(key);
  }

  numRequeues(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /**
   * The next key to process, waiting until there is one; undefined once the queue is shut
   * down. The caller must call done(key) when it has finished with it.
   */
  get(): Promise<string | undefined> {
    if (this.shuttingDown) return Promise.resolve(undefined);
    const key = this.ready.shift();
    if (key !== undefined) return Promise.resolve(this.take(key));
    return new Promise((resolve) => this.getters.push(resolve));
  }

  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.has(key) && !this.shuttingDown) this.push(key);
    if (this.processing.size === 0) this.idleWaiters.splice(0).forEach((wake) => wake());
  }

  /**
   * Stops handing out keys (waiting get() calls return undefined) and drops the queued and
   * delayed ones: after a shutdown the informers' next relist is the source of truth.
   * The returned promise resolves once every key handed out so far is done().
   */
  shutDown(): Promise<void> {
    this.shuttingDown = true;
    for (const { timer } of this.waiting.values()) clearTimeout(timer);
    this.waiting.clear();
    this.ready.length = 0;
    this.dirty.clear();
    this.getters.splice(0).forEach((resolve) => resolve(undefined));
    if (this.processing.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private push(key: string): void {
    const getter = this.getters.shift();
    if (getter) getter(this.take(key));
    else this.ready.push(key);
  }

  private take(key: string): string {
    this.dirty.delete(key);
    this.processing.add(key);
    return key;
  }
}
