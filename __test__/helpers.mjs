// Shared helpers for the ava suite: real endpoints on loopback, bounded waits.
import { NetworkingMessages } from '../dist/index.mjs';

export async function endpoint(options = {}) {
  return NetworkingMessages.create({ bind: '127.0.0.1:0', ...options });
}

export function addrOf(peer) {
  return `ip:${peer.localAddress.address}:${peer.localAddress.port}`;
}

/** Polls `fn` until it returns a truthy value or `ms` passes (then throws). */
export async function waitFor(fn, ms = 5000, what = 'condition') {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Collects `count` messages from `channel`, waiting at most `ms`. */
export async function collect(peer, channel, count, ms = 5000) {
  const got = [];
  await waitFor(
    () => {
      got.push(...peer.receiveMessagesOnChannel(channel, 256));
      return got.length >= count;
    },
    ms,
    `${count} messages on channel ${channel} (got ${got.length})`,
  );
  return got;
}
