import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { sha256Hex } from './hashing.js';

export type SignatureAlgorithm = 'ed25519' | 'ecdsa-p256-sha256';

export interface VerificationKey {
  publicKey: KeyObject;
  algorithm: SignatureAlgorithm;
  /** SHA-256 (hex) of the DER SubjectPublicKeyInfo: names the key in DSSE signatures. */
  keyid: string;
}

export interface SigningKey extends VerificationKey {
  privateKey: KeyObject;
}

function algorithmOf(key: KeyObject): SignatureAlgorithm {
  if (key.asymmetricKeyType === 'ed25519') return 'ed25519';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') {
    return 'ecdsa-p256-sha256';
  }
  const curve = key.asymmetricKeyDetails?.namedCurve;
  throw new Error(
    `unsupported signing key type ${key.asymmetricKeyType}${curve ? ` (${curve})` : ''}: use Ed25519 or ECDSA P-256`,
  );
}

function keyIdOf(publicKey: KeyObject): string {
  return sha256Hex(publicKey.export({ type: 'spki', format: 'der' }));
}

/** Loads the private key that signs manifests (PEM, PKCS#8 or SEC1; e.g. from a Kubernetes Secret). */
export function loadSigningKey(pem: string | Buffer): SigningKey {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch (err) {
    throw new Error(`cannot read the signing key: expected a PEM private key (${(err as Error).message})`);
  }
  const publicKey = createPublicKey(privateKey);
  return { privateKey, publicKey, algorithm: algorithmOf(privateKey), keyid: keyIdOf(publicKey) };
}

/** Loads the key that verifies manifests: a PEM public key (a private key PEM works too). */
export function loadVerificationKey(pem: string | Buffer): VerificationKey {
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey(pem);
  } catch (err) {
    throw new Error(`cannot read the public key: expected a PEM public key (${(err as Error).message})`);
  }
  return { publicKey, algorithm: algorithmOf(publicKey), keyid: keyIdOf(publicKey) };
}

/** ECDSA signatures are DER-encoded, as DSSE and Sigstore tooling expect. */
export function signBytes(key: SigningKey, data: Buffer): Buffer {
  return key.algorithm === 'ed25519'
    ? sign(null, data, key.privateKey)
    : sign('sha256', data, { key: key.privateKey, dsaEncoding: 'der' });
}

export function verifyBytes(key: VerificationKey, data: Buffer, signature: Buffer): boolean {
  try {
    return key.algorithm === 'ed25519'
      ? verify(null, data, key.publicKey, signature)
      : verify('sha256', data, { key: key.publicKey, dsaEncoding: 'der' }, signature);
  } catch {
    // A malformed signature (bad DER) is a failed verification, not a crash.
    return false;
  }
}
