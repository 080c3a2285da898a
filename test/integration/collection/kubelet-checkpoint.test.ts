import type { V1Node } from '@kubernetes/client-node';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { requestCheckpoint, type KubeletCheckpointConfig } from '../../../src/collection/checkpoint.js';
import { TestPki } from '../../testenv/pki.js';

const root = '/var/lib/kubelet/checkpoints';
const target = { namespace: 'shop', pod: 'web', container: 'app' };
const archive = `${root}/checkpoint-web_shop-app-2026-11-28T14:00:00Z.tar`;

/**
 * The operator's side of the kubelet checkpoint API over real TLS (ADR 0023): what a kubelet
 * that lies, or a listener that is not the kubelet, gets from it. The real kubelet is in
 * test/integration/node/checkpoint.test.ts; it cannot be made to answer a hostile path, so its
 * answers are played here by an HTTPS server with a serving certificate of the test PKI.
 */
describe('requesting a checkpoint from a kubelet', () => {
  let dir: string;
  let pki: TestPki;
  let other: TestPki;
  let kubelet: FakeKubelet;
  let impostor: FakeKubelet;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'amber-kubelet-ckpt-'));
    pki = new TestPki(mkdtempSync(join(dir, 'pki-')));
    other = new TestPki(mkdtempSync(join(dir, 'other-')));
    kubelet = await FakeKubelet.start(pki.issue('kubelet', { cn: 'node-a' }, ['127.0.0.1']), pki.caCert);
    impostor = await FakeKubelet.start(other.issue('impostor', { cn: 'node-a' }, ['127.0.0.1']), pki.caCert);
  });
  afterAll(async () => {
    await kubelet?.close();
    await impostor?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    kubelet.requests = [];
    impostor.requests = [];
  });

  const node = (port: number): V1Node => ({
    metadata: { name: 'node-a' },
    status: {
      addresses: [{ type: 'InternalIP', address: '127.0.0.1' }],
      daemonEndpoints: { kubeletEndpoint: { Port: port } },
    },
  });
  const config = (): KubeletCheckpointConfig => ({
    kubeletCA: pki.caCert,
    checkpointsDir: root,
    timeoutSeconds: 30,
    serviceAccount: 'amber-checkpoint',
  });
  // What the operator gets from TokenRequest for amber-checkpoint; never its own credentials.
  const token = async () => 'checkpoint-only-token';

  it('takes the archive the kubelet names, asked with the checkpoint-only token and nothing else', async () => {
    kubelet.answer = { status: 200, body: `{"items":["${archive}"]}` };
    const out = await requestCheckpoint(token, node(kubelet.port), target, config());
    expect(out.request).toEqual({ archive });
    expect(kubelet.requests).toEqual([
      {
        method: 'POST',
        url: '/checkpoint/shop/web/app?timeout=30',
        // No client certificate: the operator's identity never reaches the node (attacker review).
        client: '',
        authorization: 'Bearer checkpoint-only-token',
      },
    ]);
  });

  it.each([
    [`${root}/../../../etc/shadow`, /has an empty, "\." or "\.\." component/],
    ['/etc/shadow', /is not directly in \/var\/lib\/kubelet\/checkpoints/],
    [`${root}/checkpoint-web_shop-app-2026-11-28T14:00:00Z.tar/../../x`, /"\.\."/],
    [`${root}/checkpoint-db_shop-app-2026-11-28T14:00:00Z.tar`, /not named as the kubelet names/],
  ])('refuses an answer naming %s', async (path, reason) => {
    kubelet.answer = { status: 200, body: JSON.stringify({ items: [path] }) };
    const out = await requestCheckpoint(token, node(kubelet.port), target, config());
    expect('refused' in out.request && out.request.refused).toMatch(reason);
  });

  it("keeps a refusal's exact answer, capped", async () => {
    kubelet.answer = { status: 500, body: `checkpointing of shop/web/app failed (${'x'.repeat(3000)})` };
    const out = await requestCheckpoint(token, node(kubelet.port), target, config());
    expect('refused' in out.request && out.request.refused).toMatch(
      /^the kubelet answered HTTP 500: checkpointing of shop\/web\/app failed \(x+\.\.\. \(3039 characters\)$/,
    );
  });

  it('never talks to a listener whose certificate the configured CA did not sign', async () => {
    impostor.answer = { status: 200, body: `{"items":["${archive}"]}` };
    const out = await requestCheckpoint(token, node(impostor.port), target, config());
    expect('refused' in out.request && out.request.refused).toMatch(
      /the request to the kubelet at 127\.0\.0\.1:\d+ failed: .*(certificate|self.signed)/i,
    );
    expect(impostor.requests).toEqual([]);
  });

  it('sends nothing without a configured CA', async () => {
    kubelet.answer = { status: 200, body: `{"items":["${archive}"]}` };
    const out = await requestCheckpoint(token, node(kubelet.port), target, {
      ...config(),
      kubeletCA: undefined,
    });
    expect('refused' in out.request && out.request.refused).toMatch(
      /^not requested: no kubelet CA is configured/,
    );
    expect(kubelet.requests).toEqual([]);
  });

  // The attack (attacker review): root on the node answers in the kubelet's place, 200 and then
  // a byte every 100 ms. A socket timeout never fires; the case waited for ever.
  it('an answer trickled a byte at a time ends at the deadline', async () => {
    kubelet.answer = 'trickle';
    const out = await requestCheckpoint(token, node(kubelet.port), target, {
      ...config(),
      timeoutSeconds: 1,
      graceSeconds: 1,
    });
    expect('refused' in out.request && out.request.refused).toMatch(/no complete answer within 2000 ms/);
  });

  it('an answer past 64 KiB is cut there and the connection ended', async () => {
    kubelet.answer = 'flood';
    const out = await requestCheckpoint(token, node(kubelet.port), target, config());
    expect('refused' in out.request && out.request.refused).toMatch(
      /^the kubelet answered HTTP 200 with no JSON/,
    );
  });

  it('without a checkpoint token nothing is sent', async () => {
    kubelet.answer = { status: 200, body: `{"items":["${archive}"]}` };
    const out = await requestCheckpoint(
      () => Promise.reject(new Error('forbidden')),
      node(kubelet.port),
      target,
      config(),
    );
    expect('refused' in out.request && out.request.refused).toBe(
      'not requested: no checkpoint token: forbidden',
    );
    expect(kubelet.requests).toEqual([]);
  });

  it('a connection cut before the answer is a refusal with the error', async () => {
    kubelet.answer = 'hang up';
    const out = await requestCheckpoint(token, node(kubelet.port), target, config());
    expect('refused' in out.request && out.request.refused).toMatch(/failed: socket hang up/);
  });
});

class FakeKubelet {
  answer: { status: number; body: string } | 'hang up' | 'trickle' | 'flood' = {
    status: 404,
    body: 'not found',
  };
  requests: { method: string; url: string; client: string; authorization?: string }[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(serving: { cert: string; key: string }, clientCa: string): Promise<FakeKubelet> {
    const box: { self?: FakeKubelet } = {};
    const server = createServer(
      {
        cert: readFileSync(serving.cert),
        key: readFileSync(serving.key),
        ca: readFileSync(clientCa),
        requestCert: true,
        rejectUnauthorized: false,
      },
      (req, res) => {
        const peer = (req.socket as TLSSocket).getPeerCertificate();
        box.self!.requests.push({
          method: req.method ?? '',
          url: req.url ?? '',
          client: String(peer.subject?.CN ?? ''),
          ...(req.headers.authorization !== undefined && { authorization: req.headers.authorization }),
        });
        const a = box.self!.answer;
        if (a === 'hang up') {
          req.socket.destroy();
          return;
        }
        if (a === 'trickle') {
          res.writeHead(200, { 'Content-Type': 'application/json' });
          const t = setInterval(() => (res.destroyed ? clearInterval(t) : res.write(' ')), 100);
          box.self!.timers.add(t);
          return;
        }
        if (a === 'flood') {
          res.writeHead(200, { 'Content-Type': 'application/json' });
          const chunk = Buffer.alloc(16 * 1024, 0x20);
          const pump = () => {
            while (!res.destroyed && res.write(chunk));
            if (!res.destroyed) res.once('drain', pump);
          };
          pump();
          return;
        }
        res.writeHead(a.status, { 'Content-Type': 'application/json' }).end(a.body);
      },
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    box.self = new FakeKubelet(server, (server.address() as { port: number }).port);
    return box.self;
  }

  close(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
