import { ApiException } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import {
  CatastrophicError,
  ConflictError,
  RetryableError,
  TerminalError,
  classify,
  errorMessage,
  isConflict,
  isNotFound,
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
