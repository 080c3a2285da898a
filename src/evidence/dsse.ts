import { z } from 'zod';
import { signBytes, verifyBytes, type SigningKey, type VerificationKey } from './keys.js';

/** DSSE v1 (github.com/secure-systems-lab/dsse): a signed envelope around an opaque payload. */
export const envelopeSchema = z.object({
  payloadType: z.string().min(1),
  payload: z.base64(),
  signatures: z.array(z.object({ keyid: z.string().default(''), sig: z.base64() })).min(1),
});
export type Envelope = z.infer<typeof envelopeSchema>;

/**
 * Pre-Authentication Encoding: what is actually signed. Binding the payload type into the
 * signed bytes stops a signature over one kind of document being replayed as another.
 *   "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body   (LEN = byte length, ASCII decimal)
 */
export function pae(payloadType: string, payload: Buffer): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([
    Buffer.from(`DSSEv1 ${type.length} `, 'utf8'),
    type,
    Buffer.from(` ${payload.length} `, 'utf8'),
    payload,
  ]);
}

export function signEnvelope(payloadType: string, payload: Buffer, key: SigningKey): Envelope {
  const sig = signBytes(key, pae(payloadType, payload));
  return {
    payloadType,
    payload: payload.toString('base64'),
    signatures: [{ keyid: key.keyid, sig: sig.toString('base64') }],
  };
}

export type EnvelopeVerification =
  { valid: true; payload: Buffer; keyid: string } | { valid: false; payload: Buffer; reason: string };

/**
 * Checks that at least one signature was made by `key` over this payload and payload type.
 * The payload is returned either way so a caller can still report what an invalid manifest claims.
 */
export function verifyEnvelope(envelope: Envelope, key: VerificationKey): EnvelopeVerification {
  const payload = Buffer.from(envelope.payload, 'base64');
  const signed = pae(envelope.payloadType, payload);
  for (const s of envelope.signatures) {
    // keyid is a hint, not trusted: the signature itself decides.
    if (verifyBytes(key, signed, Buffer.from(s.sig, 'base64')))
      return { valid: true, payload, keyid: key.keyid };
  }
  const ids = envelope.signatures.map((s) => s.keyid || '(no keyid)').join(', ');
  return {
    valid: false,
    payload,
    reason: `no signature verifies with the given public key (keyid ${key.keyid}); envelope signed by: ${ids}`,
  };
}
