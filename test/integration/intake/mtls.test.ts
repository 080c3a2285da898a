import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Alert } from '../../../src/intake/falco.js';
import { buildIntakeApp } from '../../../src/intake/app.js';
import { createIntakeMetrics } from '../../../src/intake/metrics.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { createRegistry } from '../../../src/observability/metrics.js';
import { postLikeFalcosidekick } from '../../testenv/falcosidekick.js';
import { TestPki } from '../../testenv/pki.js';

/**
 * The webhook over real TLS with client certificates (Falcosidekick's MUTUALTLS setting), with
 * certificates openssl issues: a client without a certificate from the CA never gets an answer.
 */
describe('intake with mutual TLS', () => {
  const token = 'mtls-token-0123456789abcdef';
  const dir = mkdtempSync(join(tmpdir(), 'amber-mtls-'));
  const accepted: Alert[] = [];
  let url: string;
  let pki: TestPki;
  let client: { cert: string; key: string };
  let app: ReturnType<typeof buildIntakeApp>;

  beforeAll(async () => {
    pki = new TestPki(dir);
    const server = pki.issue('intake', { cn: 'amber-intake' }, ['127.0.0.1']);
    client = pki.issue('falcosidekick', { cn: 'falcosidekick' });
    app = buildIntakeApp(
      {
        sink: { accept: (a) => (accepted.push(a), { outcome: 'attached', case: 'recorded' }) },
        token,
        metrics: createIntakeMetrics(createRegistry()),
        logger: silentLogger,
      },
      {
        https: {
          key: readFileSync(server.key),
          cert: readFileSync(server.cert),
          ca: readFileSync(pki.caCert),
          requestCert: true,
          rejectUnauthorized: true,
        },
      },
    );
    url = await app.listen({ port: 0, host: '127.0.0.1' });
  });
  afterAll(async () => {
    await app?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const event = readFileSync(
    join(import.meta.dirname, '..', '..', 'fixtures', 'falco', 'syscall-terminal-shell.json'),
    'utf8',
  );

  it('accepts a client certificate signed by the CA, with the token', async () => {
    const res = await postLikeFalcosidekick(
      url,
      event,
      { Authorization: `Bearer ${token}` },
      { ca: readFileSync(pki.caCert), cert: readFileSync(client.cert), key: readFileSync(client.key) },
    );
    expect(res.status).toBe(202);
    expect(accepted.map((a) => a.rule)).toEqual(['Terminal shell in container']);
  });

  it('refuses the TLS handshake without a client certificate, and nothing is accepted', async () => {
    await expect(
      postLikeFalcosidekick(
        url,
        event,
        { Authorization: `Bearer ${token}` },
        { ca: readFileSync(pki.caCert) },
      ),
    ).rejects.toThrow();
    expect(accepted).toHaveLength(1);
  });

  it('refuses a certificate from another CA', async () => {
    const other = new TestPki(mkdtempSync(join(dir, 'other-')));
    const rogue = other.issue('rogue', { cn: 'falcosidekick' });
    await expect(
      postLikeFalcosidekick(
        url,
        event,
        { Authorization: `Bearer ${token}` },
        { ca: readFileSync(pki.caCert), cert: readFileSync(rogue.cert), key: readFileSync(rogue.key) },
      ),
    ).rejects.toThrow();
    expect(accepted).toHaveLength(1);
  });

  it('still wants the token over mutual TLS', async () => {
    const res = await postLikeFalcosidekick(
      url,
      event,
      {},
      { ca: readFileSync(pki.caCert), cert: readFileSync(client.cert), key: readFileSync(client.key) },
    );
    expect(res.status).toBe(401);
    expect(accepted).toHaveLength(1);
  });
});
