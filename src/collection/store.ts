import type { S3Client } from '@aws-sdk/client-s3';
import type { Registry } from 'prom-client';
import type { ForensicCase } from '../api/forensiccase.js';
import { LocalEvidenceStore } from '../evidence/local-store.js';
import type { Retention } from '../evidence/retention.js';
import { S3EvidenceStore, createS3Client } from '../evidence/s3-store.js';
import type { EvidenceStore } from '../evidence/store.js';
import type { Logger } from '../observability/logger.js';
import type { CollectionConfig } from './config.js';

/** Where one case's evidence goes: the case's spec.evidence over the operator's defaults. */
export type ResolvedStore =
  | {
      type: 's3';
      bucket: string;
      prefix: string;
      endpoint?: string;
      region: string;
      forcePathStyle: boolean;
      retention: Retention;
    }
  | { type: 'local'; root: string };

/** A store the case cannot use, with the reason (a terminal condition, not a retry). */
export class StoreConfigError extends Error {
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

export function resolveStore(kase: ForensicCase, cfg: CollectionConfig): ResolvedStore {
  const { store, retention, legalHold } = kase.spec.evidence;
  if (store.type === 'local') {
    // A case's directory is <root>/<case>: the case's path, or the operator's default root.
    return { type: 'local', root: store.path ?? cfg.evidence.localRoot };
  }
  const bucket = store.bucket ?? cfg.evidence.bucket;
  if (!bucket)
    throw new StoreConfigError(
      'NoEvidenceBucket',
      'spec.evidence.store.bucket is not set and the operator has no default bucket',
    );
  const endpoint = store.endpoint ?? cfg.evidence.endpoint;
  return {
    type: 's3',
    bucket,
    prefix: store.prefix,
    region: store.region,
    forcePathStyle: cfg.evidence.forcePathStyle ?? endpoint !== undefined,
    retention: { mode: retention.mode, period: `${retention.days}d`, legalHold },
    ...(endpoint && { endpoint }),
  };
}

/** Evidence stores for cases; S3 clients are shared per endpoint and region. */
export class StoreFactory {
  private readonly clients = new Map<string, S3Client>();

  constructor(
    private readonly cfg: CollectionConfig,
    private readonly registry: Registry,
    private readonly logger: Logger,
  ) {}

  open(resolved: ResolvedStore): EvidenceStore {
    if (resolved.type === 'local')
      return new LocalEvidenceStore({ root: resolved.root, registry: this.registry, logger: this.logger });
    const key = `${resolved.endpoint ?? ''}|${resolved.region}|${resolved.forcePathStyle}`;
    let client = this.clients.get(key);
    if (!client) {
      client = createS3Client({
        region: resolved.region,
        forcePathStyle: resolved.forcePathStyle,
        ...(resolved.endpoint && { endpoint: resolved.endpoint }),
        ...(this.cfg.evidence.credentials && { credentials: this.cfg.evidence.credentials }),
      });
      this.clients.set(key, client);
    }
    return new S3EvidenceStore({
      client,
      bucket: resolved.bucket,
      prefix: resolved.prefix,
      retention: resolved.retention,
      registry: this.registry,
      logger: this.logger,
    });
  }

  close(): void {
    for (const c of this.clients.values()) c.destroy();
    this.clients.clear();
  }
}
