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

/** Offsets of a packed batch's columns (`withConn`: the connection API's extra ones). */
function layout(batch: Buffer, withConn: boolean) {
  const n = batch.readUInt32LE(0);
  const p = batch.readUInt32LE(4);
  const nameBytes = batch.readUInt32LE(8);
  const numbersAt = 16;
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
