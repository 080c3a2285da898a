import type { V1Node } from '@kubernetes/client-node';
import { readFile } from 'node:fs/promises';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { isIP } from 'node:net';
import { checkArchivePath, type CheckpointRequest } from '../collector/checkpoint.js';
import { errorMessage } from '../runtime/errors.js';

/**
 * The kubelet's checkpoint API (KEP-2008) asked by the operator (ADR 0023):
 * `POST https://<node InternalIP>:<kubelet port>/checkpoint/<namespace>/<pod>/<container>`,
 * authorized by the kubelet as `create` on `nodes/checkpoint` (never `nodes/proxy`, which also
 * grants exec). The kubelet's serving certificate is verified against a configured CA; without
 * one, nothing is sent and the gap says why.
 *
 * The node is the suspect's: root there holds the kubelet's serving key and can answer in its
 * place, so whatever is sent to it is given to the attacker. Never the operator's own identity
 * (it can patch pods and nodes, create Jobs): a short-lived token of a ServiceAccount that may
 * do nothing but `create` on `nodes/checkpoint` (`amber-checkpoint`, TokenRequest, 10 minutes).
 * And the answer is hostile: the whole exchange has one deadline, and an answer past its size
 * ends the connection.
 */

/** The kubelet's answer is kept in the evidence up to this many characters. */
export const ANSWER_CHARS = 1000;
/** The kubelet's answer is never read past this. */
const MAX_ANSWER_BYTES = 64 * 1024;

export interface KubeletCheckpointConfig {
  /** PEM file with the CA that signs the kubelets' serving certificates; unset: never asked. */
  kubeletCA?: string | undefined;
  /** The kubelets' checkpoint directory (<kubelet root-dir>/checkpoints). */
  checkpointsDir: string;
  /** Passed to the kubelet (its `timeout` query parameter); the request waits 10 s more. */
  timeoutSeconds: number;
  /** The seconds the whole exchange may take past timeoutSeconds (default 10). */
  graceSeconds?: number;
  /** The ServiceAccount (in the operator's namespace) whose short-lived token asks the kubelet. */
  serviceAccount: string;
}

export interface CheckpointTarget {
  namespace: string;
  pod: string;
  container: string;
}

/** Where the node's kubelet listens, from the Node object, or why it cannot be told. */
export function kubeletEndpoint(node: V1Node | undefined): { host: string; port: number } | { gap: string } {
  if (!node) return { gap: 'the node is not known to the API server' };
  const port = node.status?.daemonEndpoints?.kubeletEndpoint?.Port;
  if (!port || !Number.isInteger(port) || port < 1 || port > 65535)
    return { gap: `node ${node.metadata?.name} publishes no kubelet port (status.daemonEndpoints)` };
  const ip = node.status?.addresses?.find((a) => a.type === 'InternalIP' && isIP(a.address) !== 0)?.address;
  if (!ip) return { gap: `node ${node.metadata?.name} publishes no InternalIP address` };
  return { host: ip, port };
}

/** The request's path: each segment escaped, so a name can never add a segment or a query. */
export function checkpointPath(t: CheckpointTarget, timeoutSeconds: number): string {
  const seg = encodeURIComponent;
  return `/checkpoint/${seg(t.namespace)}/${seg(t.pod)}/${seg(t.container)}?timeout=${timeoutSeconds}`;
}

/** The answer as it goes into the evidence: one line, capped. */
export function shownAnswer(body: string): string {
  const flat = body.replace(/\s+/g, ' ').trim();
  return flat.length > ANSWER_CHARS ? `${flat.slice(0, ANSWER_CHARS)}... (${flat.length} characters)` : flat;
}

/**
 * What the kubelet's answer means for the collection: the one archive it named (checked: directly
 * in the checkpoints directory, this container's name shape) or a refusal with its exact answer.
 */
export function judgeCheckpointAnswer(
  status: number,
  body: string,
  t: CheckpointTarget,
  checkpointsDir: string,
): CheckpointRequest {
  if (status !== 200)
    return { refused: `the kubelet answered HTTP ${status}: ${shownAnswer(body) || '(empty)'}` };
  let items: unknown;
  try {
    items = (JSON.parse(body) as { items?: unknown }).items;
  } catch {
    return { refused: `the kubelet answered HTTP 200 with no JSON: ${shownAnswer(body)}` };
  }
  if (!Array.isArray(items) || items.length !== 1)
    return { refused: `the kubelet's answer names no single archive: ${shownAnswer(body)}` };
  const checked = checkArchivePath(items[0], { root: checkpointsDir, ...t });
  if ('refused' in checked)
    return { refused: `the archive the kubelet named is refused: ${checked.refused}` };
  return { archive: checked.path };
}

export interface CheckpointOutcome {
  request: CheckpointRequest;
  /** How long the kubelet took to answer (no request: 0). */
  ms: number;
}

/** Asks the node's kubelet to checkpoint one container; never throws (a failure is a refusal). */
export async function requestCheckpoint(
  /** A bearer token that may only checkpoint (never the operator's own credentials). */
  token: () => Promise<string>,
  node: V1Node | undefined,
  t: CheckpointTarget,
  config: KubeletCheckpointConfig,
): Promise<CheckpointOutcome> {
  if (!config.kubeletCA)
    return {
      ms: 0,
      request: {
        refused:
          "not requested: no kubelet CA is configured (checkpoint.kubeletCA), so the kubelet's serving certificate cannot be verified",
      },
    };
  const at = kubeletEndpoint(node);
  if ('gap' in at) return { ms: 0, request: { refused: `not requested: ${at.gap}` } };
  let ca: Buffer;
  try {
    ca = await readFile(config.kubeletCA);
  } catch (err) {
    return {
      ms: 0,
      request: { refused: `not requested: the kubelet CA ${config.kubeletCA}: ${errorMessage(err)}` },
    };
  }
  let bearer: string;
  try {
    bearer = await token();
  } catch (err) {
    return { ms: 0, request: { refused: `not requested: no checkpoint token: ${errorMessage(err)}` } };
  }
  const started = Date.now();
  try {
    const { status, body } = await post(
      {
        host: at.host,
        port: at.port,
        path: checkpointPath(t, config.timeoutSeconds),
        method: 'POST',
        headers: { Authorization: `Bearer ${bearer}`, Accept: 'application/json' },
        // Only the configured CA, and always verified: whatever the kubeconfig says about its own server.
        ca,
        rejectUnauthorized: true,
      },
      (config.timeoutSeconds + (config.graceSeconds ?? 10)) * 1000,
    );
    return {
      ms: Date.now() - started,
      request: judgeCheckpointAnswer(status, body, t, config.checkpointsDir),
    };
  } catch (err) {
    return {
      ms: Date.now() - started,
      request: {
        refused: `the request to the kubelet at ${at.host}:${at.port} failed: ${errorMessage(err)}`,
      },
    };
  }
}

/** One POST with one deadline for all of it: connecting, waiting, and reading the answer. */
function post(options: RequestOptions, deadlineMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    // A socket timeout only fires when nothing arrives: an answer trickled a byte at a time
    // would hold the case for ever (attacker review). This one ends it whatever arrives.
    const timer = setTimeout(
      () => req.destroy(new Error(`no complete answer within ${deadlineMs} ms`)),
      deadlineMs,
    );
    const settle =
      <T>(f: (v: T) => void) =>
      (v: T) => {
        clearTimeout(timer);
        f(v);
      };
    resolve = settle(resolve);
    reject = settle(reject);
    const req = httpsRequest(options, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        chunks.push(c);
        size += c.length;
        // Past the size, the answer is cut where it is and the connection ended.
        if (size >= MAX_ANSWER_BYTES) {
          res.destroy();
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString('utf8').slice(0, MAX_ANSWER_BYTES),
          });
        }
      });
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          body: Buffer.concat(chunks).toString('utf8').slice(0, MAX_ANSWER_BYTES),
        }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}
