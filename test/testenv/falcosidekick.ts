import { request } from 'node:http';
import { request as httpsRequest } from 'node:https';

/**
 * Falcosidekick cannot be built here: the Go module proxy answers 403 "This module version is
 * not available" for github.com/falcosecurity/falcosidekick at every version, pseudo-version and
 * sub-path tried (docs/falcosidekick.md lists them). Until it can, this posts a Falco event the
 * way Falcosidekick's webhook output does (outputs/client.go and outputs/webhook.go in its
 * repository): one JSON object per POST, `Content-Type: application/json; charset=utf-8`,
 * `User-Agent: Falcosidekick`, then WEBHOOK_CUSTOMHEADERS set on top (Authorization here).
 * Falcosidekick re-encodes the event with Go's encoding/json after decoding it with UseNumber,
 * so integers keep their digits; the body is sent as given.
 *
 * When the real program can be built, startFalcosidekick() goes here (LISTENPORT=<free port>,
 * WEBHOOK_ADDRESS=<intake url>, WEBHOOK_CUSTOMHEADERS=Authorization:Bearer <token>) and tests
 * POST the same fixtures to it instead.
 */
export function postLikeFalcosidekick(
  url: string,
  body: string | Buffer,
  customHeaders: Record<string, string>,
  tls?: { ca?: string | Buffer; cert?: string | Buffer; key?: string | Buffer },
): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  const send = u.protocol === 'https:' ? httpsRequest : request;
  return new Promise((resolve, reject) => {
    const req = send(
      u,
      {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json; charset=utf-8',
          'User-Agent': 'Falcosidekick',
          ...customHeaders,
          'Content-Length': Buffer.byteLength(body),
        },
        ...(tls ?? {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
