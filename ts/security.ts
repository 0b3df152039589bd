import { Identity } from './identity';
import { native } from './native';

/** An Ed25519 key pair; the private key is its 32-byte seed. */
export interface KeyPair {
  /** Keep secret: pass it as `privateKey` (or as a CA key to {@link issueCertificate}). */
  privateKey: Buffer;
  /** Share it: a CA's public key goes into its peers' `trustedCAs`. */
  publicKey: Buffer;
}

/** Generates an Ed25519 key pair from the operating system's random source. */
export function generateKeyPair(): KeyPair {
  return native.generateKeyPair();
}

/** The public key of a 32-byte private key. */
export function publicKeyOf(privateKey: Uint8Array): Buffer {
  if (!(privateKey instanceof Uint8Array)) throw new TypeError('privateKey must be a Uint8Array');
  try {
    return native.publicKeyOf(Buffer.from(privateKey));
  } catch (e) {
    throw new TypeError((e as Error).message);
  }
}

/** What {@link issueCertificate} needs. */
export interface CertificateRequest {
  /** The CA's private key (32 bytes). */
  caPrivateKey: Uint8Array;
  /** The subject's public key (32 bytes). */
  publicKey: Uint8Array;
  /** The identity the certificate proves (not an `ip:` identity). */
  identity: Identity | string;
  /** Validity from now, in seconds; default one year. */
  validSeconds?: number;
}

/**
 * Issues a certificate binding `identity` to `publicKey`, signed by a CA key. The subject
 * passes it as `certificate` (with its `privateKey` and `identity`); peers that list the CA's
 * public key in `trustedCAs` then know it by that identity.
 */
export function issueCertificate(req: CertificateRequest): Buffer {
  if (req === null || typeof req !== 'object') throw new TypeError('issueCertificate takes an object');
  const id = Identity.from(req.identity);
  if (id.type === 1) throw new TypeError('an ip: identity needs no certificate');
  const valid = req.validSeconds ?? 365 * 24 * 3600;
  if (typeof valid !== 'number' || !(valid > 0)) throw new RangeError('validSeconds must be a positive number');
  if (!(req.caPrivateKey instanceof Uint8Array) || !(req.publicKey instanceof Uint8Array)) {
    throw new TypeError('caPrivateKey and publicKey must be Uint8Arrays');
  }
  try {
    return native.issueCertificate(Buffer.from(req.caPrivateKey), Buffer.from(req.publicKey), id.toString(), valid);
  } catch (e) {
    throw new TypeError((e as Error).message);
  }
}
