import { IdentityType } from './generated';
import { native } from './native';

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
      throw new TypeError((e as Error).message);
    }
    return new Identity(parts.kind as IdentityType, parts.text);
  }

  /** An IP identity from `'1.2.3.4:27015'` or `'[::1]:27015'`. */
  static fromIp(address: string): Identity {
    return Identity.parse(`ip:${String(address)}`);
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
}
