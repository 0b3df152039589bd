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

/** Messages still waiting on the channel after this batch. */
export function batchLeft(batch: Buffer): number {
  return batch.readUInt32LE(16);
}

/** The messages of one packed batch (`null`: none waited), all on `channel`. */
export function toMessages(batch: Buffer | null, channel: number): NetworkingMessage[] {
  if (batch === null) return [];
  const n = batch.readUInt32LE(0);
  const p = batch.readUInt32LE(4);
  const nameBytes = batch.readUInt32LE(8);
  const numbersAt = 24;
  const timesAt = numbersAt + 8 * n;
  const sizesAt = timesAt + 8 * n;
  const flagsAt = sizesAt + 4 * n;
  const peerIndexAt = flagsAt + 4 * n;
  const nameLensAt = peerIndexAt + 4 * n;
  let nameAt = nameLensAt + 4 * p;
  const peers = new Array<Identity>(p);
  for (let i = 0; i < p; i++) {
    const len = batch.readUInt32LE(nameLensAt + 4 * i);
    peers[i] = Identity.parse(batch.toString('utf8', nameAt, nameAt + len));
    nameAt += len;
  }
  let dataAt = nameLensAt + 4 * p + nameBytes;
  const out = new Array<NetworkingMessage>(n);
  for (let i = 0; i < n; i++) {
    const size = batch.readUInt32LE(sizesAt + 4 * i);
    out[i] = new ReceivedMessage(
      batch.subarray(dataAt, dataAt + size),
      peers[batch.readUInt32LE(peerIndexAt + 4 * i)] as Identity,
      channel,
      batch.readBigUInt64LE(numbersAt + 8 * i),
      batch.readUInt32LE(flagsAt + 4 * i),
      batch.readBigUInt64LE(timesAt + 8 * i),
    );
    dataAt += size;
  }
  return out;
}
