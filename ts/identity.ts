import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';

import { IdentityType } from './generated';
import { native } from './native';

/**
 * Why `text` is not an identity, in words that say what to write instead; `reason` is the
 * parser's own. Catches the usual slips: a bare `host:port` (no type prefix), a hostname
 * where an address goes.
 */
export function explainIdentityText(text: string, reason: string): string {
  const shown = JSON.stringify(text);
  if (text.trim() !== text) return `identity ${shown} has spaces around it`;
  const hostPort = /^(\[[^\]]*\]|[^:[\]]+):(\d+)$/.exec(text);
  if (hostPort) {
    const host = (hostPort[1] ?? '').replace(/^\[|\]$/g, '');
    if (isIP(host) !== 0) return `identity ${shown} has no type prefix: an address identity is written ip:${text}`;
    return `identity ${shown} has no type prefix, and ${JSON.stringify(host)} is a hostname: resolve it first, e.g. await Identity.lookup(${shown})`;
  }
  const ip = /^ip:(\[[^\]]*\]|[^:[\]]+)(?::(\d+))?$/.exec(text);
  if (ip) {
    const host = (ip[1] ?? '').replace(/^\[|\]$/g, '');
    if (isIP(host) === 0 && /[a-z]/i.test(host)) {
      return `identity ${shown} names a host, not an address: ip: identities take a numeric IPv4 or [IPv6] address; resolve the name first, e.g. await Identity.lookup(${JSON.stringify(text.slice(3))})`;
    }
    if (ip[2] === undefined) return `identity ${shown} has no port: write ip:${ip[1]}:PORT`;
  }
  if (!/^(ip|str|gen|steamid|invalid):/.test(text) && /^[a-z]+:/i.test(text)) {
    return `identity ${shown} has an unknown type prefix: use ip:, str:, gen: or steamid: (${reason})`;
  }
  if (!/^[a-z]+:/i.test(text)) {
    return `identity ${shown} has no type prefix: use ip:host:port, str:name, gen:hex or steamid:number`;
  }
  return `identity ${shown} is not valid: ${reason}`;
}

/** Recently parsed identities by text (bounded: cleared past a few thousand peers). */
const parsed = new Map<string, Identity>();
const PARSED_MAX = 4096;

/**
 * Who a peer is, in Steam's forms: an IP address (`ip:1.2.3.4:27015`), a generic string
 * (`str:alice`), generic bytes (`gen:<hex>`) or a SteamID (`steamid:<n>`).
 * Immutable; compare with {@link Identity.equals}.
 */
export class Identity {
  /** Steam's identity type. */
  readonly type: IdentityType;
  readonly #text: string;

  private constructor(type: IdentityType, text: string) {
    this.type = type;
    this.#text = text;
  }

  /** Parses Steam's text form; throws a `TypeError` if it is not one. */
  static parse(text: string): Identity {
    if (typeof text !== 'string') {
      throw new TypeError(`identity text must be a string, got ${typeof text}`);
    }
    // Identities are immutable, so one instance per text can be shared: a program that
    // names its peers by string pays for parsing once per peer, not once per message.
    const cached = parsed.get(text);
    if (cached !== undefined) return cached;
    const id = Identity.#parseNew(text);
    if (parsed.size >= PARSED_MAX) parsed.clear();
    parsed.set(text, id);
    return id;
  }

  static #parseNew(text: string): Identity {
    let parts: { kind: number; text: string };
    try {
      parts = native.parseIdentity(text);
    } catch (e) {
      throw Object.assign(new TypeError(explainIdentityText(text, (e as Error).message)), {
        code: 'ERR_NETMESSAGES_BAD_IDENTITY',
      });
    }
    return new Identity(parts.kind as IdentityType, parts.text);
  }

  /** An IP identity from `'1.2.3.4:27015'` or `'[::1]:27015'`. */
  static fromIp(address: string): Identity {
    return Identity.parse(`ip:${String(address)}`);
  }

  /**
   * An IP identity for `'host:port'` (or `'ip:host:port'`), resolving a hostname with the
   * system resolver (`dns.lookup`, as `dgram` does); `family` picks IPv4 or IPv6 when
   * the name has both (default: the resolver's first answer).
   */
  static async lookup(hostPort: string, options: { family?: 4 | 6 } = {}): Promise<Identity> {
    if (typeof hostPort !== 'string') throw new TypeError('lookup takes a "host:port" string');
    const text = hostPort.startsWith('ip:') ? hostPort.slice(3) : hostPort;
    const m = /^(\[[^\]]*\]|[^:[\]]+):(\d+)$/.exec(text);
    if (!m) throw new TypeError(`${JSON.stringify(hostPort)} is not "host:port"`);
    const host = (m[1] ?? '').replace(/^\[|\]$/g, '');
    const { address, family } = await lookup(host, options.family === undefined ? {} : { family: options.family });
    return Identity.fromIp(family === 6 ? `[${address}]:${m[2]}` : `${address}:${m[2]}`);
  }

  /** A generic string identity (1..31 bytes of UTF-8). */
  static fromString(name: string): Identity {
    if (typeof name !== 'string') throw new TypeError('name must be a string');
    return Identity.parse(`str:${name}`);
  }

  /** A generic bytes identity (1..32 bytes). */
  static fromBytes(bytes: Uint8Array): Identity {
    if (!(bytes instanceof Uint8Array)) throw new TypeError('bytes must be a Uint8Array');
    return Identity.parse(`gen:${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')}`);
  }

  /** A SteamID identity (a nonzero 64-bit number). */
  static fromSteamId(id: bigint): Identity {
    if (typeof id !== 'bigint') throw new TypeError('a SteamID is a bigint');
    if (id <= 0n || id >= 1n << 64n) throw new RangeError('a SteamID is a nonzero unsigned 64-bit number');
    return Identity.parse(`steamid:${id}`);
  }

  /** Accepts an Identity or its text form. */
  static from(value: Identity | string): Identity {
    return value instanceof Identity ? value : Identity.parse(value);
  }

  /** Steam's text form. */
  toString(): string {
    return this.#text;
  }

  /** Same peer? Accepts an Identity or its text form. */
  equals(other: Identity | string): boolean {
    try {
      return Identity.from(other).#text === this.#text;
    } catch {
      return false;
    }
  }

  /** JSON form is the text form. */
  toJSON(): string {
    return this.#text;
  }

  /** `util.inspect` (and `console.log`) show the text form: `Identity(str:alice)`. */
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `Identity(${this.#text})`;
  }
}
