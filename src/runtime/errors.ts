import { ApiException } from '@kubernetes/client-node';
import { z } from 'zod';

/**
 * What the controller does with a failed reconcile:
 * - retryable: log, requeue with the key's exponential backoff;
 * - conflict: someone else changed the object first (HTTP 409); requeue soon, without an
 *   error log, because the next pass reads the new version and converges;
 * - terminal: the input is wrong and retrying cannot help; the reconciler records it as a
 *   condition and the key is not retried until the object changes;
 * - catastrophic: the process is in a state it cannot reason about (e.g. a broken invariant);
 *   exit and let Kubernetes restart it clean.
 */
export type ErrorKind = 'retryable' | 'conflict' | 'terminal' | 'catastrophic';

abstract class KindedError extends Error {
  abstract readonly kind: ErrorKind;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class RetryableError extends KindedError {
  readonly kind = 'retryable';
}
export class ConflictError extends KindedError {
  readonly kind = 'conflict';
}
export class TerminalError extends KindedError {
  readonly kind = 'terminal';
}
export class CatastrophicError extends KindedError {
  readonly kind = 'catastrophic';
}

/** The HTTP status of an API server error: ApiException, or the plain Error that Watch throws. */
export function apiStatusCode(err: unknown): number | undefined {
  if (err instanceof ApiException) return err.code;
  if (err instanceof Error && 'statusCode' in err && typeof err.statusCode === 'number')
    return err.statusCode;
  return undefined;
}

export function isNotFound(err: unknown): boolean {
  return apiStatusCode(err) === 404;
}

export function isConflict(err: unknown): boolean {
  return apiStatusCode(err) === 409;
}

export function classify(err: unknown): ErrorKind {
  if (err instanceof KindedError) return err.kind;
  const code = apiStatusCode(err);
  if (code === 409) return 'conflict';
  // The API server refused the object itself: sending it again gets the same answer.
  if (code === 400 || code === 422) return 'terminal';
  // 404 depends on what was missing: the reconciled object itself (gone: the reconciler should
  // check isNotFound and return), or something it refers to that may still appear (retry).
  // 429, 5xx, 401/403 (RBAC can be fixed), 410 and network errors are worth retrying.
  return 'retryable';
}

/** HTTP statuses that say "not now": the server is overloaded, restarting or behind a proxy that is. */
const TRANSIENT_STATUS = new Set([429, 500, 502, 503, 504]);

/**
 * Error codes of a connection that failed or broke, from Node (system errors, streams, HTTP/2)
 * and undici: another attempt on a new connection may well succeed.
 */
const TRANSIENT_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'ERR_STREAM_PREMATURE_CLOSE',
  'ERR_HTTP2_GOAWAY_SESSION',
  'ERR_HTTP2_STREAM_ERROR',
  'ERR_HTTP2_STREAM_CANCEL',
  'ERR_HTTP2_SESSION_ERROR',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);

/**
 * A failure that is expected to pass by itself: a broken or refused connection, a timeout, or
 * the API server saying it is overloaded or unavailable. Looks through `cause` chains (undici's
 * fetch reports "fetch failed" with the socket error as its cause). Not transient: what a person
 * has to fix (RBAC, a missing object, a refused object) and anything unrecognised.
 */
export function isTransient(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const status = apiStatusCode(e);
    if (status !== undefined) return TRANSIENT_STATUS.has(status);
    if (e.name === 'TimeoutError') return true;
    if ('code' in e && typeof e.code === 'string' && TRANSIENT_CODES.has(e.code)) return true;
  }
  return false;
}

/** Failed attempts in a row after which a transient failure is worth an error log (about 5 s). */
export const TRANSIENT_ATTEMPTS_BEFORE_ERROR = 10;

/**
 * The level to log a failure that will be retried at. A transient one is expected under load
 * (a burst, an API server restart) and is retried anyway: a warning, until it has failed so
 * often that it is no longer passing by itself. Anything else is an error at once: a person may
 * have to act (RBAC, configuration, a bug).
 */
export function retryLogLevel(err: unknown, attempt: number): 'warn' | 'error' {
  return isTransient(err) && attempt < TRANSIENT_ATTEMPTS_BEFORE_ERROR ? 'warn' : 'error';
}

const statusBody = z.object({ message: z.string() });

/** A one-line message for logs and conditions; for API errors, the server's own message. */
export function errorMessage(err: unknown): string {
  if (err instanceof ApiException) {
    const body: unknown = typeof err.body === 'string' ? safeJson(err.body) : err.body;
    const status = statusBody.safeParse(body);
    return status.success ? `HTTP ${err.code}: ${status.data.message}` : `HTTP ${err.code}`;
  }
  return err instanceof Error ? err.message : String(err);
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The promise's value, or undefined when the API server answers 404 (gone is a state, not an error). */
export async function orNotFound<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}
