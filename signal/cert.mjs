// Certificate checks for the signaling server, in plain JS with node:crypto.
//
// netmessages certificates are GNS's protobufs: CMsgSteamDatagramCertificateSigned
// { cert: bytes (4), ca_key_id: fixed64 (5), ca_signature: bytes (6) } wrapping
// CMsgSteamDatagramCertificate { key_type (1) = 1 (Ed25519), key_data (2), identity_string
// (12), time_created (8), time_expiry (9), app_ids (10) }, signed with Ed25519 by a CA whose
// key id is the first 8 bytes of SHA-256(CA public key), little-endian (as in netcore's
// crypto/cert.rs). The server verifies in JS rather than through the native addon so that it
// runs wherever Node does, needs no compiled binary for the host, and stays a separate,
// small, auditable piece: about a hundred lines over node:crypto's Ed25519.
import { createHash, createPublicKey, createPrivateKey, verify as edVerify, sign as edSign } from 'node:crypto';

/** Why a certificate or proof was refused. */
export class CertError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

// A tiny protobuf reader: enough for these two messages, strict about bounds.
function* fields(buf) {
  let i = 0;
  const varint = () => {
    let v = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (i >= buf.length) throw new CertError('bad-certificate', 'truncated varint');
      const b = buf[i++];
      v |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return v;
    }
    throw new CertError('bad-certificate', 'varint too long');
  };
  while (i < buf.length) {
    const key = varint();
    const field = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (wire === 0) yield { field, wire, value: varint() };
    else if (wire === 1) {
      if (i + 8 > buf.length) throw new CertError('bad-certificate', 'truncated fixed64');
      yield { field, wire, value: buf.readBigUInt64LE(i) };
      i += 8;
    } else if (wire === 2) {
      const len = Number(varint());
      if (len > buf.length - i) throw new CertError('bad-certificate', 'truncated bytes field');
      yield { field, wire, value: buf.subarray(i, i + len) };
      i += len;
    } else if (wire === 5) {
      if (i + 4 > buf.length) throw new CertError('bad-certificate', 'truncated fixed32');
      yield { field, wire, value: buf.readUInt32LE(i) };
      i += 4;
    } else {
      throw new CertError('bad-certificate', `unsupported wire type ${wire}`);
    }
  }
}

/** Parses a CertificateSigned (outer) message. */
export function parseSignedCertificate(bytes) {
  const out = { cert: null, caKeyId: null, caSignature: null };
  for (const f of fields(bytes)) {
    if (f.field === 4 && f.wire === 2) out.cert = Buffer.from(f.value);
    else if (f.field === 5 && f.wire === 1) out.caKeyId = f.value;
    else if (f.field === 6 && f.wire === 2) out.caSignature = Buffer.from(f.value);
  }
  return out;
}

/** Parses the inner Certificate message. */
export function parseCertificate(bytes) {
  const out = { keyType: 0, keyData: null, identity: null, timeCreated: null, timeExpiry: null, appIds: [] };
  for (const f of fields(bytes)) {
    if (f.field === 1 && f.wire === 0) out.keyType = Number(f.value);
    else if (f.field === 2 && f.wire === 2) out.keyData = Buffer.from(f.value);
    else if (f.field === 12 && f.wire === 2) out.identity = Buffer.from(f.value).toString('utf8');
    else if (f.field === 8 && f.wire === 5) out.timeCreated = f.value;
    else if (f.field === 9 && f.wire === 5) out.timeExpiry = f.value;
    else if (f.field === 10 && f.wire === 0) out.appIds.push(Number(f.value));
    else if (f.field === 10 && f.wire === 2) {
      // Packed form (proto3 writers); proto2 writers send one key per id.
      let v = 0;
      let shift = 0;
      for (const b of f.value) {
        v += (b & 0x7f) * 2 ** shift;
        shift += 7;
        if ((b & 0x80) === 0) {
          out.appIds.push(v);
          v = 0;
          shift = 0;
        } else if (shift > 35) throw new CertError('bad-certificate', 'packed app id too long');
      }
    }
  }
  return out;
}

/** GNS's 64-bit key id of an Ed25519 public key. */
export function keyId(publicKey) {
  return createHash('sha256').update(publicKey).digest().readBigUInt64LE(0);
}

const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** A node:crypto key object for a raw 32-byte Ed25519 public key. */
export function publicKeyObject(raw) {
  if (!Buffer.isBuffer(raw) || raw.length !== 32) throw new CertError('bad-key', 'an Ed25519 public key is 32 bytes');
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

/** A node:crypto key object for a raw 32-byte Ed25519 private key (seed). */
export function privateKeyObject(seed) {
  if (!Buffer.isBuffer(seed) || seed.length !== 32) throw new CertError('bad-key', 'an Ed25519 private key is 32 bytes');
  return createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
}

/** Ed25519 signature of `message` with a raw private key. */
export function signWith(seed, message) {
  return edSign(null, message, privateKeyObject(seed));
}

/**
 * Checks a CA-signed certificate the way netcore does for an authenticated peer: a trusted
 * CA's signature over the exact `cert` bytes, not expired, an Ed25519 key, an identity that
 * is not an address, and (if `appId` is given) that app among its app ids.
 * Returns `{ identity, publicKey, caKeyId, expiry }`.
 */
export function verifyCertificate(bytes, { trustedCAs, nowUnix = Math.floor(Date.now() / 1000), appId = null }) {
  const signed = parseSignedCertificate(bytes);
  if (!signed.cert || signed.cert.length === 0) throw new CertError('bad-certificate', 'no certificate bytes');
  if (signed.caKeyId === null || !signed.caSignature) throw new CertError('untrusted', 'the certificate is not CA-signed');
  const ca = trustedCAs.find((k) => keyId(k) === signed.caKeyId);
  if (!ca) throw new CertError('untrusted', `CA key ${signed.caKeyId} is not trusted here`);
  let ok = false;
  try {
    ok = edVerify(null, signed.cert, publicKeyObject(ca), signed.caSignature);
  } catch {
    ok = false;
  }
  if (!ok) throw new CertError('untrusted', 'the CA signature does not verify');
  const cert = parseCertificate(signed.cert);
  if ((cert.timeExpiry ?? 0) < nowUnix) throw new CertError('expired', `the certificate expired at ${cert.timeExpiry ?? 0}`);
  if (cert.keyType !== 1 || !cert.keyData || cert.keyData.length !== 32) throw new CertError('bad-certificate', 'the certificate key is not Ed25519');
  if (!cert.identity) throw new CertError('bad-certificate', 'the certificate names no identity');
  if (cert.identity.startsWith('ip:')) throw new CertError('bad-certificate', 'address identities cannot register');
  if (cert.appIds.length === 0) throw new CertError('bad-certificate', 'a certificate naming an identity must list an app id');
  if (appId !== null && !cert.appIds.includes(appId)) throw new CertError('bad-certificate', `the certificate is not valid for app ${appId}`);
  return { identity: cert.identity, publicKey: cert.keyData, caKeyId: signed.caKeyId, expiry: cert.timeExpiry };
}

/** Checks an Ed25519 signature by a raw public key. */
export function verifySignature(publicKey, message, signature) {
  try {
    return signature.length === 64 && edVerify(null, message, publicKeyObject(publicKey), signature);
  } catch {
    return false;
  }
}
