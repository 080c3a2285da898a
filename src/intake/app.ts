import { timingSafeEqual } from 'node:crypto';
import Fastify, {
  LogController,
  type FastifyError,
  type FastifyInstance,
  type FastifyPluginCallback,
  type FastifyReply,
  type FastifyServerOptions,
} from 'fastify';
import type { Logger } from '../observability/logger.js';
import type { AcceptOutcome } from './engine.js';
import { IntakeError } from './errors.js';
import { parseFalcoBody, toAlert, type Alert } from './falco.js';
import type { IntakeMetrics } from './metrics.js';

/**
 * The webhook Falcosidekick (or Falco's http_output) posts to: POST / and POST /falco, a bearer
 * token, one Falco event per request. Every refusal is a 4xx/503 with a stable code
 * (docs/falcosidekick.md); nothing a client sends can make it answer 5xx or stop the process.
 */

/** Where accepted alerts go: the IntakeEngine. */
export interface AlertSink {
  accept(alert: Alert): AcceptOutcome;
}

export interface IntakeAppDeps {
  sink: AlertSink;
  /** The bearer token Falcosidekick sends (WEBHOOK_CUSTOMHEADERS=Authorization:Bearer <token>). */
  token: string;
  metrics: IntakeMetrics;
  logger: Logger;
  /** Largest body accepted, in bytes. Falcosidekick truncates long fields, so 1 MiB is generous. */
  bodyLimit?: number;
}

const DEFAULT_BODY_LIMIT = 1024 * 1024;

/** Fastify's own error codes mapped to ours, so clients see one vocabulary. */
const FASTIFY_CODES: Record<string, string> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported-media-type',
  FST_ERR_CTP_BODY_TOO_LARGE: 'body-too-large',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'empty-body',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid-content-length',
  FST_ERR_CTP_INVALID_TYPE: 'unsupported-media-type',
};

/**
 * The expected token, zero-padded to a fixed width, so that a given token is compared over the
 * same number of bytes whatever its length or content: neither leaks through timing. (A digest
 * of each side did the same at a SHA-256 per request, the largest part of the check.)
 */
export interface BearerExpectation {
  padded: Buffer;
  length: number;
  /** Where a given token is written for the comparison (the check is synchronous). */
  scratch: Buffer;
}

/** Tokens are compared over this many bytes at least; a longer given token is refused as such. */
const BEARER_WIDTH = 512;

export function bearerExpectation(token: string): BearerExpectation {
  const bytes = Buffer.from(token, 'utf8');
  const width = Math.max(BEARER_WIDTH, bytes.length);
  const padded = Buffer.alloc(width);
  bytes.copy(padded);
  return { padded, length: bytes.length, scratch: Buffer.alloc(width) };
}

/** Whether an Authorization header carries the token, in time that depends on the header alone. */
export function bearerMatches(header: string | undefined, expected: BearerExpectation): boolean {
  const m = /^Bearer[ ]+(.+)$/i.exec(header ?? '');
  const given = m?.[1]?.trim() ?? '';
  const { padded, length, scratch } = expected;
  // Too long to be the token: known from the given header alone (its length is the client's).
  if (Buffer.byteLength(given, 'utf8') > scratch.length) return false;
  scratch.fill(0);
  const written = scratch.write(given, 'utf8');
  // The zero padding makes "token" and "token\0" equal bytes: the lengths tell them apart.
  return timingSafeEqual(scratch, padded) && written === length && m !== null;
}

export const intakePlugin: FastifyPluginCallback<IntakeAppDeps> = (app, deps, done) => {
  if (deps.token.length < 16) throw new Error('the intake token must be at least 16 characters');
  const expected = bearerExpectation(deps.token);
  const { metrics, sink, logger } = deps;
  // One histogram child per status: the label set is hashed once, not on every answer.
  const durations = new Map<number, { observe(seconds: number): void }>();
  const durationFor = (status: number) => {
    let child = durations.get(status);
    if (!child) durations.set(status, (child = metrics.webhookDuration.labels(String(status))));
    return child;
  };
  const bodyLimit = deps.bodyLimit ?? DEFAULT_BODY_LIMIT;

  app.removeAllContentTypeParsers();
  // application/json, with or without parameters (Falcosidekick adds `; charset=utf-8`).
  app.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit }, (_req, body, parsed) => {
    try {
      parsed(null, parseFalcoBody(body as Buffer));
    } catch (err) {
      parsed(err as Error, undefined);
    }
  });

  app.addHook('onRequest', (req, reply, next) => {
    if (req.method !== 'POST') return next();
    if (!bearerMatches(req.headers.authorization, expected)) {
      // Answered before the body is read: an unauthenticated client costs nothing and changes nothing.
      void reply
        .code(401)
        .header('www-authenticate', 'Bearer')
        .send({ error: { code: 'unauthorized', message: 'a valid bearer token is required' } });
      return;
    }
    next();
  });

  app.addHook('onResponse', (_req, reply, next) => {
    // elapsedTime: from fastify's own start of the request (before the onRequest hooks), in ms.
    durationFor(reply.statusCode).observe(reply.elapsedTime / 1000);
    if (reply.statusCode === 401) metrics.rejected.inc({ reason: 'unauthorized' });
    next();
  });

  app.setErrorHandler((err: FastifyError | IntakeError, req, reply) => {
    let status: number;
    let code: string;
    let message: string;
    if (err instanceof IntakeError) {
      ({ statusCode: status, code, message } = err);
    } else if (err.code && FASTIFY_CODES[err.code]) {
      status = err.statusCode ?? 400;
      code = FASTIFY_CODES[err.code]!;
      message = err.message;
    } else if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
      status = err.statusCode;
      code = 'bad-request';
      message = err.message;
    } else {
      logger.error({ err, reqId: req.id }, 'intake failed');
      status = 500;
      code = 'internal';
      message = 'internal error';
    }
    metrics.rejected.inc({ reason: code });
    if (status === 503) reply.header('retry-after', '1');
    void reply.code(status).send({ error: { code, message } });
  });

  app.setNotFoundHandler((req, reply) => {
    void reply
      .code(404)
      .send({ error: { code: 'not-found', message: `no route ${req.method} ${req.url.slice(0, 200)}` } });
  });

  const handler = async (req: { body: unknown }, reply: FastifyReply) => {
    if (req.body === undefined || req.body === null) {
      throw new IntakeError(
        'empty-body',
        400,
        'the body must be a Falco event in JSON (Content-Type: application/json)',
      );
    }
    const alert = toAlert(req.body as Parameters<typeof toAlert>[0]);
    metrics.received.inc();
    const outcome = sink.accept(alert);
    void reply.code(202);
    if (!('durable' in outcome) || outcome.durable === undefined) return { accepted: true, ...outcome };
    // With a write-ahead log, 202 means "on disk": the answer waits for the group commit.
    const { durable, ...answer } = outcome;
    await durable;
    return { accepted: true, ...answer };
  };
  app.post('/', handler);
  app.post('/falco', handler);

  app.get('/healthz', async () => ({ status: 'ok' }));
  done();
};

export type IntakeServerOptions = Pick<
  FastifyServerOptions,
  'connectionTimeout' | 'keepAliveTimeout' | 'requestTimeout'
> & {
  /** TLS, optionally mutual: Falcosidekick's MUTUALTLS client presents a certificate signed by `ca`. */
  https?: {
    key: string | Buffer;
    cert: string | Buffer;
    ca?: string | Buffer;
    requestCert?: boolean;
    rejectUnauthorized?: boolean;
  };
};

/** The intake as a Fastify instance; tests call app.inject(), the operator calls listen(). */
export function buildIntakeApp(deps: IntakeAppDeps, server: IntakeServerOptions = {}): FastifyInstance {
  const { https, ...timeouts } = server;
  const app = Fastify({
    loggerInstance: deps.logger,
    // At thousands of alerts per second a log line per request would cost more than the request.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: deps.bodyLimit ?? DEFAULT_BODY_LIMIT,
    requestTimeout: 30_000,
    ...timeouts,
    ...(https ? { https } : {}),
  }) as unknown as FastifyInstance;
  void app.register(intakePlugin, deps);
  return app;
}
