import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { pae, signEnvelope, verifyEnvelope } from '../../../src/evidence/dsse.js';
import { loadSigningKey, loadVerificationKey } from '../../../src/evidence/keys.js';

function pemPair(type: 'ed25519' | 'p256') {
  const { privateKey, publicKey } =
    type === 'ed25519'
      ? generateKeyPairSync('ed25519')
      : generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

describe('PAE', () => {
  it('matches the example of the DSSE specification', () => {
    expect(pae('http://example.com/HelloWorld', Buffer.from('hello world')).toString()).toBe(
      'DSSEv1 29 http://example.com/HelloWorld 11 hello world',
    );
  });

  it('counts bytes, not characters', () => {
    expect(pae('t', Buffer.from('é', 'utf8')).toString('utf8')).toBe('DSSEv1 1 t 2 é');
    expect(pae('é', Buffer.alloc(0)).toString('utf8')).toBe('DSSEv1 2 é 0 ');
  });

  it('is injective: different (type, payload) pairs never encode alike', () => {
    fc.assert(
      fc.property(fc.string(), fc.uint8Array(), fc.string(), fc.uint8Array(), (t1, p1, t2, p2) => {
        const same = t1 === t2 && Buffer.from(p1).equals(Buffer.from(p2));
        expect(pae(t1, Buffer.from(p1)).equals(pae(t2, Buffer.from(p2)))).toBe(same);
      }),
    );
  });
});

describe.each(['ed25519', 'p256'] as const)('DSSE envelope with %s', (type) => {
  const { privatePem, publicPem } = pemPair(type);
  const signer = loadSigningKey(privatePem);
  const verifier = loadVerificationKey(publicPem);
  const payload = Buffer.from('{"hello":"world"}');

  it('names the key by the same id on both sides', () => {
    expect(signer.keyid).toBe(verifier.keyid);
    expect(signer.keyid).toMatch(/^[0-9a-f]{64}$/);
  });

  it('verifies what it signed', () => {
    const env = signEnvelope('application/vnd.in-toto+json', payload, signer);
    const result = verifyEnvelope(env, verifier);
    expect(result.valid).toBe(true);
    expect(result.payload.equals(payload)).toBe(true);
  });

  it('rejects a changed payload', () => {
    const env = signEnvelope('application/vnd.in-toto+json', payload, signer);
    env.payload = Buffer.from('{"hello":"World"}').toString('base64');
    expect(verifyEnvelope(env, verifier).valid).toBe(false);
  });

  it('rejects a changed payload type (PAE binds it)', () => {
    const env = signEnvelope('application/vnd.in-toto+json', payload, signer);
    env.payloadType = 'application/json';
    expect(verifyEnvelope(env, verifier).valid).toBe(false);
  });

  it('rejects another key, and says which keys signed', () => {
    const env = signEnvelope('application/vnd.in-toto+json', payload, signer);
    const other = loadVerificationKey(pemPair(type).publicPem);
    const result = verifyEnvelope(env, other);
    expect(result.valid).toBe(false);
    if (!result.valid) expect(result.reason).toContain(signer.keyid);
  });

  it('treats a garbage signature as invalid, not as a crash', () => {
    const env = signEnvelope('t', payload, signer);
    env.signatures[0]!.sig = Buffer.from('not a signature').toString('base64');
    expect(verifyEnvelope(env, verifier).valid).toBe(false);
  });
});

describe('key loading', () => {
  it('accepts a private key PEM where a public key is expected', () => {
    const { privatePem } = pemPair('ed25519');
    expect(loadVerificationKey(privatePem).keyid).toBe(loadSigningKey(privatePem).keyid);
  });

  it('refuses RSA and other curves with a clear message', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
    });
    expect(() => loadSigningKey(rsa)).toThrow(/unsupported signing key type rsa/);
    const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
    });
    expect(() => loadSigningKey(p384)).toThrow(/secp384r1/);
  });

  it('refuses text that is not a key', () => {
    expect(() => loadSigningKey('hello')).toThrow(/cannot read the signing key/);
    expect(() => loadVerificationKey('hello')).toThrow(/cannot read the public key/);
  });
});
