import { ApiException } from '@kubernetes/client-node';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { fetch } from 'undici';
import { describe, expect, it } from 'vitest';
import {
  CatastrophicError,
  ConflictError,
  RetryableError,
  TRANSIENT_ATTEMPTS_BEFORE_ERROR,
  TerminalError,
  classify,
  errorMessage,
  isConflict,
  isNotFound,
  isTransient,
  retryLogLevel,
} from '../../../src/runtime/errors.js';

const api = (code: number, body: unknown = {}) =>
  new ApiException(code, 'Unsuccessful HTTP Request', body, {});

describe('classify', () => {
  it.each([
    [409, 'conflict'],
    [400, 'terminal'],
    [422, 'terminal'],
    [404, 'retryable'],
    [410, 'retryable'],
    [429, 'retryable'],
    [500, 'retryable'],
    [503, 'retryable'],
    [403, 'retryable'],
  ] as const)('HTTP %i is %s', (code, kind) => {
    expect(classify(api(code))).toBe(kind);
  });

  it('keeps the kind of our own errors', () => {
    expect(classify(new RetryableError('x'))).toBe('retryable');
    expect(classify(new ConflictError('x'))).toBe('conflict');
    expect(classify(new TerminalError('x'))).toBe('terminal');
    expect(classify(new CatastrophicError('x'))).toBe('catastrophic');
  });

  it('treats network errors and unknown throws as retryable', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6443'), { code: 'ECONNREFUSED' });
    expect(classify(refused)).toBe('retryable');
    expect(classify('a string')).toBe('retryable');
    expect(classify(undefined)).toBe('retryable');
  });

  it('reads the status code of the plain errors Watch throws', () => {
    const gone = Object.assign(new Error('Gone'), { statusCode: 410 });
    expect(classify(gone)).toBe('retryable');
    const conflict = Object.assign(new Error('Conflict'), { statusCode: 409 });
    expect(isConflict(conflict)).toBe(true);
  });
});

describe('helpers', () => {
  it('isNotFound / isConflict', () => {
    expect(isNotFound(api(404))).toBe(true);
    expect(isNotFound(api(409))).toBe(false);
    expect(isConflict(api(409))).toBe(true);
    expect(isNotFound(new Error('x'))).toBe(false);
  });

  it('errorMessage uses the API server status message, parsed or raw', () => {
    expect(errorMessage(api(422, { kind: 'Status', message: 'spec.x: Invalid value' }))).toBe(
      'HTTP 422: spec.x: Invalid value',
    );
    expect(errorMessage(api(409, JSON.stringify({ message: 'the object has been modified' })))).toBe(
      'HTTP 409: the object has been modified',
    );
    expect(errorMessage(api(500, 'not json'))).toBe('HTTP 500');
    expect(errorMessage(new Error('boom'))).toBe('boom');
    expect(errorMessage(42)).toBe('42');
  });

  it('error names and causes survive', () => {
    const cause = new Error('root');
    const err = new TerminalError('bad spec', { cause });
    expect(err.name).toBe('TerminalError');
    expect(err.cause).toBe(cause);
    expect(err).toBeInstanceOf(Error);
  });
});

/** What undici's fetch (client-node 2's HTTP client) really throws, from real local sockets. */
async function fetchError(serve: (server: Server) => void, { close = false } = {}): Promise<unknown> {
  const server = createServer();
  serve(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  if (close) await new Promise((resolve) => server.close(resolve));
  try {
    const res = await fetch(`http://127.0.0.1:${port}/`);
    await res.text();
    return undefined;
  } catch (err) {
    return err;
  } finally {
    if (!close) server.close();
  }
}

describe('isTransient', () => {
  it('a refused connection (fetch failed, caused by ECONNREFUSED)', async () => {
    const err = await fetchError(() => undefined, { close: true });
    expect(err).toBeInstanceOf(TypeError);
    expect(isTransient(err)).toBe(true);
  });

  it('a response cut off mid-body (terminated, caused by UND_ERR_SOCKET)', async () => {
    const err = await fetchError((server) =>
      server.on('connection', (socket) =>
        socket.once('data', () => {
          socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial":');
          socket.end(() => socket.destroy());
        }),
      ),
    );
    expect(err).toBeDefined();
    expect(isTransient(err)).toBe(true);
  });

  it('a reset before any answer', async () => {
    const err = await fetchError((server) =>
      server.on('connection', (socket) => socket.once('data', () => socket.resetAndDestroy())),
    );
    expect(err).toBeDefined();
    expect(isTransient(err)).toBe(true);
  });

  it("node-fetch 2's premature close and a timeout", () => {
    const premature = Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
    expect(isTransient(new Error('Invalid response body', { cause: premature }))).toBe(true);
    expect(isTransient(new DOMException('The operation was aborted due to timeout', 'TimeoutError'))).toBe(
      true,
    );
  });

  it.each([
    [429, true],
    [500, true],
    [502, true],
    [503, true],
    [504, true],
    [400, false],
    [401, false],
    [403, false],
    [404, false],
    [409, false],
    [410, false],
    [422, false],
  ] as const)('HTTP %i: %s', (code, transient) => {
    expect(isTransient(api(code))).toBe(transient);
    // Wrapped by our own kinds, the cause decides.
    expect(isTransient(new RetryableError('wrapped', { cause: api(code) }))).toBe(transient);
  });

  it('not what a person has to fix, nor what it does not recognise', () => {
    expect(isTransient(new Error('bucket does not exist'))).toBe(false);
    expect(isTransient(new RetryableError('try again'))).toBe(false);
    expect(isTransient(new TerminalError('bad spec'))).toBe(false);
    expect(isTransient(Object.assign(new Error('denied'), { code: 'EACCES' }))).toBe(false);
    expect(isTransient('a string')).toBe(false);
    expect(isTransient(undefined)).toBe(false);
  });

  it('follows a cause chain only so far (a cycle cannot hang it)', () => {
    const a = new Error('a');
    const b = new Error('b', { cause: a });
    Object.assign(a, { cause: b });
    expect(isTransient(a)).toBe(false);
  });
});

describe('retryLogLevel', () => {
  const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
  it.each([
    ['transient, first attempt', reset, 1, 'warn'],
    ['transient, still passing by itself', api(503), TRANSIENT_ATTEMPTS_BEFORE_ERROR - 1, 'warn'],
    ['transient, but persisting', reset, TRANSIENT_ATTEMPTS_BEFORE_ERROR, 'error'],
    ['not transient (RBAC), first attempt', api(403), 1, 'error'],
    ['unrecognised, first attempt', new Error('boom'), 1, 'error'],
  ] as const)('%s: %s', (_name, err, attempt, level) => {
    expect(retryLogLevel(err, attempt)).toBe(level);
  });
});
