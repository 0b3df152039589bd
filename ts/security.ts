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

/**
 * The key id of a public key (decimal text): certificates name the CA that signed them by
 * it, and a session refused for an untrusted CA reports it (`... signed by CA key id N,
 * which is not in trustedCAs`), so this tells which of your CA keys that is.
 */
export function keyIdOf(publicKey: Uint8Array): string {
  if (!(publicKey instanceof Uint8Array)) throw new TypeError('publicKey must be a Uint8Array');
  try {
    return native.keyIdOf(Buffer.from(publicKey));
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

/** The `create` options that say who an endpoint is and whom it trusts. */
export interface SecurityCreateOptions {
  /**
   * Who we are. A non-`ip:` identity needs `privateKey` and a `certificate` for it from a CA
   * the peers trust; without one, peers know us by the `ip:` address they see.
   */
  identity?: Identity | string;
  /** Ed25519 private key (32 bytes, see `generateKeyPair`); default: generated per endpoint. */
  privateKey?: Uint8Array;
  /** Certificate binding `identity` to `privateKey`'s public key (see `issueCertificate`). */
  certificate?: Uint8Array;
  /** CA public keys (32 bytes each) whose certificates prove peers' identities. */
  trustedCAs?: Uint8Array[];
  /**
   * Accept peers without a trusted certificate, known by their `ip:` address; default true.
   * Their sessions are still encrypted, but an active man in the middle could impersonate
   * them: set false (with `trustedCAs`) to accept only peers with certificates.
   */
  allowUnauthenticated?: boolean;
}

function bytesOption(name: string, v: unknown, length?: number): Buffer | undefined {
  if (v === undefined) return undefined;
  if (!(v instanceof Uint8Array)) throw new TypeError(`${name} must be a Uint8Array`);
  if (length !== undefined && v.byteLength !== length) {
    throw new TypeError(`${name} must be ${length} bytes, got ${v.byteLength}`);
  }
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/** Checks the identity and trust options and puts them in the binding's shape. */
export function securityOptions(options: SecurityCreateOptions): {
  privateKey?: Buffer;
  certificate?: Buffer;
  identity?: string;
  trustedCAs?: Buffer[];
  allowUnauthenticated?: boolean;
} {
  let identity: string | undefined;
  if (options.identity !== undefined) {
    identity = Identity.from(options.identity).toString();
  }
  const trusted = options.trustedCAs;
  if (trusted !== undefined && !Array.isArray(trusted)) throw new TypeError('trustedCAs must be an array');
  const allow = options.allowUnauthenticated;
  if (allow !== undefined && typeof allow !== 'boolean') throw new TypeError('allowUnauthenticated must be a boolean');
  return {
    privateKey: bytesOption('privateKey', options.privateKey, 32),
    certificate: bytesOption('certificate', options.certificate),
    identity,
    trustedCAs: trusted?.map((k, i) => bytesOption(`trustedCAs[${i}]`, k, 32) as Buffer),
    allowUnauthenticated: allow,
  };
}

