// Unpacks the binding's receive batch (layout documented in binding/src/receive_batch.rs):
// one buffer per batch, so a batch costs one value crossing from native code; each message's
// data is a view into it.
import { Identity } from './identity';

/** A received message. */
export interface NetworkingMessage {
  /** The payload. Do not use after {@link NetworkingMessage.release}. */
  readonly data: Buffer;
  /** `data.length`. */
  readonly size: number;
  /** Who sent it. */
  readonly identityPeer: Identity;
  /** The channel it arrived on. */
  readonly channel: number;
  /** The sender's number for this message. */
  readonly messageNumber: bigint;
  /** The flags the sender used. */
  readonly sendFlags: number;
  /** Arrival time in µs on a monotonic clock. */
  readonly timeReceived: bigint;
  /** Gives the buffer back. Optional: the garbage collector reclaims it anyway. */
  release(): void;
}

class ReceivedMessage implements NetworkingMessage {
  #data: Buffer | undefined;
  readonly size: number;

  constructor(
    data: Buffer,
    readonly identityPeer: Identity,
    readonly channel: number,
    readonly messageNumber: bigint,
    readonly sendFlags: number,
    readonly timeReceived: bigint,
  ) {
    this.#data = data;
    this.size = data.length;
  }

  get data(): Buffer {
    if (this.#data === undefined) throw new Error('netmessages: message data used after release()');
    return this.#data;
  }

  release(): void {
    this.#data = undefined;
  }
}

/** A message received on a connection of the connection API (Steam's
 * `SteamNetworkingMessage_t`). */
export interface NetworkingConnectionMessage extends NetworkingMessage {
  /** The connection it came on (`HSteamNetConnection`). */
  readonly conn: number;
  /** The connection's user data when it arrived. */
  readonly connUserData: number;
  /** The lane it came on. */
  readonly lane: number;
}

class ConnectionMessage extends ReceivedMessage implements NetworkingConnectionMessage {
  constructor(
    data: Buffer,
    identityPeer: Identity,
    messageNumber: bigint,
    sendFlags: number,
    timeReceived: bigint,
    readonly conn: number,
    readonly lane: number,
    readonly connUserData: number,
  ) {
    super(data, identityPeer, lane, messageNumber, sendFlags, timeReceived);
  }
}

/** Messages still waiting (on the channel, connection or poll group) after this batch. */
export function batchLeft(batch: Buffer): number {
  return batch.readUInt32LE(16);
}

/** Offsets of a packed batch's columns (`withConn`: the connection API's extra ones). */
function layout(batch: Buffer, withConn: boolean) {
  const n = batch.readUInt32LE(0);
  const p = batch.readUInt32LE(4);
  const nameBytes = batch.readUInt32LE(8);
  const numbersAt = 24;
  const timesAt = numbersAt + 8 * n;
  const sizesAt = timesAt + 8 * n;
  const flagsAt = sizesAt + 4 * n;
  const connsAt = flagsAt + 4 * n;
  const lanesAt = connsAt + (withConn ? 4 * n : 0);
  const userAt = lanesAt + (withConn ? 4 * n : 0);
  const peerIndexAt = userAt + (withConn ? 8 * n : 0);
  const nameLensAt = peerIndexAt + 4 * n;
  let nameAt = nameLensAt + 4 * p;
  const peers = new Array<Identity>(p);
  for (let i = 0; i < p; i++) {
    const len = batch.readUInt32LE(nameLensAt + 4 * i);
    peers[i] = Identity.parse(batch.toString('utf8', nameAt, nameAt + len));
    nameAt += len;
  }
  const dataAt = nameLensAt + 4 * p + nameBytes;
  return { n, numbersAt, timesAt, sizesAt, flagsAt, connsAt, lanesAt, userAt, peerIndexAt, peers, dataAt };
}

/** The messages of one packed batch (`null`: none waited), all on `channel`. */
export function toMessages(batch: Buffer | null, channel: number): NetworkingMessage[] {
  if (batch === null) return [];
  const l = layout(batch, false);
  let dataAt = l.dataAt;
  const out = new Array<NetworkingMessage>(l.n);
  for (let i = 0; i < l.n; i++) {
    const size = batch.readUInt32LE(l.sizesAt + 4 * i);
    out[i] = new ReceivedMessage(
      batch.subarray(dataAt, dataAt + size),
      l.peers[batch.readUInt32LE(l.peerIndexAt + 4 * i)] as Identity,
      channel,
      batch.readBigUInt64LE(l.numbersAt + 8 * i),
      batch.readUInt32LE(l.flagsAt + 4 * i),
      batch.readBigUInt64LE(l.timesAt + 8 * i),
    );
    dataAt += size;
  }
  return out;
}

/** The messages of one packed connection-API batch (`null`: none waited). */
export function toConnectionMessages(batch: Buffer | null): NetworkingConnectionMessage[] {
  if (batch === null) return [];
  const l = layout(batch, true);
  let dataAt = l.dataAt;
  const out = new Array<NetworkingConnectionMessage>(l.n);
  for (let i = 0; i < l.n; i++) {
    const size = batch.readUInt32LE(l.sizesAt + 4 * i);
    out[i] = new ConnectionMessage(
      batch.subarray(dataAt, dataAt + size),
      l.peers[batch.readUInt32LE(l.peerIndexAt + 4 * i)] as Identity,
      batch.readBigUInt64LE(l.numbersAt + 8 * i),
      batch.readUInt32LE(l.flagsAt + 4 * i),
      batch.readBigUInt64LE(l.timesAt + 8 * i),
      batch.readUInt32LE(l.connsAt + 4 * i),
      batch.readUInt32LE(l.lanesAt + 4 * i),
      Number(batch.readBigInt64LE(l.userAt + 8 * i)),
    );
    dataAt += size;
  }
  return out;
}

/**
 * Many received messages in one object, without an object per message (the batch receive
 * API): `data` holds every payload back to back; message `i` is
 * `data.subarray(offset(i), offset(i) + size(i))`. For servers that handle hundreds of
 * thousands of messages a second, where a JS object per message is the cost that shows.
 */
export class MessageBatch {
  /** Messages in the batch. */
  readonly count: number;
  /** Every payload, back to back (a view of the native batch: no copy). */
  readonly data: Buffer;
  readonly #batch: Buffer;
  readonly #l: ReturnType<typeof layout> | undefined;
  readonly #offsets: Uint32Array;

  /** @internal */
  constructor(batch: Buffer | null) {
    this.#batch = batch ?? Buffer.alloc(0);
    this.#l = batch === null ? undefined : layout(batch, false);
    const n = this.#l?.n ?? 0;
    this.count = n;
    this.#offsets = new Uint32Array(n + 1);
    let at = 0;
    for (let i = 0; i < n; i++) {
      this.#offsets[i] = at;
      at += this.#batch.readUInt32LE((this.#l?.sizesAt ?? 0) + 4 * i);
    }
    this.#offsets[n] = at;
    const dataAt = this.#l?.dataAt ?? 0;
    this.data = this.#batch.subarray(dataAt, dataAt + at);
  }

  #check(i: number): ReturnType<typeof layout> {
    if (this.#l === undefined || !Number.isInteger(i) || i < 0 || i >= this.count) {
      throw new RangeError(`message index ${i} outside 0..${this.count - 1}`);
    }
    return this.#l;
  }

  /** Where message `i`'s payload starts in `data`. */
  offset(i: number): number {
    this.#check(i);
    return this.#offsets[i] as number;
  }

  /** Message `i`'s size in bytes. */
  size(i: number): number {
    this.#check(i);
    return (this.#offsets[i + 1] as number) - (this.#offsets[i] as number);
  }

  /** Message `i`'s payload, a view of `data`. */
  payload(i: number): Buffer {
    const start = this.offset(i);
    return this.data.subarray(start, start + this.size(i));
  }

  /** Who sent message `i` (one `Identity` per distinct sender in the batch). */
  peer(i: number): Identity {
    const l = this.#check(i);
    return l.peers[this.#batch.readUInt32LE(l.peerIndexAt + 4 * i)] as Identity;
  }

  /** Message `i`'s flags (`SendFlags.Reliable` or 0). */
  sendFlags(i: number): number {
    const l = this.#check(i);
    return this.#batch.readUInt32LE(l.flagsAt + 4 * i);
  }

  /** Message `i`'s number on its sender's lane. */
  messageNumber(i: number): bigint {
    const l = this.#check(i);
    return this.#batch.readBigUInt64LE(l.numbersAt + 8 * i);
  }

  /** When message `i` arrived, µs on a monotonic clock. */
  timeReceived(i: number): bigint {
    const l = this.#check(i);
    return this.#batch.readBigUInt64LE(l.timesAt + 8 * i);
  }
}
