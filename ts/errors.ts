// Errors that explain themselves: the typed error of `strict` mode (and the reason behind
// an EResult, from `lastError()`), the dgram-shaped error of a refused bind, and the check
// that refuses unknown options. Shared by every class of the package.
import * as util from 'node:util';

import { EResult } from './generated';

/** What went wrong, as a stable string (the `code` of a {@link NetmessagesError}). */
export type NetmessagesErrorCode =
  /** The identity is not an Identity or Steam's text form of one (a missing `ip:`, a hostname, ...). */
  | 'ERR_NETMESSAGES_BAD_IDENTITY'
  /** The data is not a Uint8Array (Buffer included) or a string. */
  | 'ERR_NETMESSAGES_BAD_DATA'
  /** The message is larger than 512 KiB. */
  | 'ERR_NETMESSAGES_MESSAGE_TOO_LARGE'
  /** The send flags are not a combination of SendFlags. */
  | 'ERR_NETMESSAGES_BAD_FLAGS'
  /** The channel is not an integer from 0 to 2^31-1. */
  | 'ERR_NETMESSAGES_BAD_CHANNEL'
  /** The `resolve` option returned something that is not `'host:port'` with a numeric address. */
  | 'ERR_NETMESSAGES_BAD_RESOLVE'
  /** The endpoint is closed (or closing). */
  | 'ERR_NETMESSAGES_CLOSED'
  /** No address is known for a peer that is not an `ip:` identity (no `resolve`, or it said undefined). */
  | 'ERR_NETMESSAGES_NO_ROUTE'
  /** The session ended (failed, or closed by the peer). */
  | 'ERR_NETMESSAGES_SESSION_ENDED'
  /** The session's send buffer (`sendBufferSize`) is full. */
  | 'ERR_NETMESSAGES_SEND_BUFFER_FULL'
  /** The endpoint's connection table is full. */
  | 'ERR_NETMESSAGES_TABLE_FULL'
  /** `NoDelay`: the message could not leave at once, so it was dropped. */
  | 'ERR_NETMESSAGES_IGNORED'
  /** An option passed to `create` is not one it knows. */
  | 'ERR_NETMESSAGES_UNKNOWN_OPTION'
  /** A failure with no more specific reason. */
  | 'ERR_NETMESSAGES_FAILED';

/** Why a call failed: the EResult it returned (or would have), a code and a sentence. */
export interface SendProblem {
  readonly result: EResult;
  readonly code: NetmessagesErrorCode;
  readonly message: string;
}

/**
 * A netmessages error: `code` says what went wrong, `result` is the `EResult` the call
 * returns when not in `strict` mode. Thrown by `strict` endpoints for bad arguments and
 * calls after `close()`.
 */
export class NetmessagesError extends Error {
  readonly code: NetmessagesErrorCode;
  readonly result: EResult;

  constructor(code: NetmessagesErrorCode, message: string, result: EResult = EResult.Fail, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NetmessagesError';
    this.code = code;
    this.result = result;
  }
}

/** What `NativeEndpoint.bind` reports when the OS refuses the socket. */
export interface BindFailureInfo {
  code?: string | null;
  osErrno?: number | null;
  address: string;
  message: string;
}

/** libuv's error number for a code name (negative, as Node reports it), if it has one. */
function uvErrno(code: string): number | undefined {
  for (const [errno, [name]] of util.getSystemErrorMap()) if (name === code) return errno;
  return undefined;
}

/**
 * The error for a refused bind, shaped as `dgram`'s: message `bind EADDRINUSE 0.0.0.0:27015`,
 * with `code`, `errno`, `syscall`, `address` and `port`. An address that does not parse
 * is a TypeError (`ERR_INVALID_ARG_VALUE`).
 */
export function bindError(f: BindFailureInfo): Error {
  if (f.code === 'ERR_INVALID_ARG_VALUE') {
    return Object.assign(new TypeError(f.message), { code: f.code });
  }
  let code = f.code ?? undefined;
  if (code === undefined && typeof f.osErrno === 'number' && process.platform !== 'win32') {
    // On POSIX libuv's numbers are the negated OS numbers.
    try {
      code = util.getSystemErrorName(-f.osErrno);
    } catch {
      code = undefined;
    }
  }
  code ??= 'EUNKNOWN';
  const cut = f.address.lastIndexOf(':');
  const address = cut < 0 ? f.address : f.address.slice(0, cut).replace(/^\[|\]$/g, '');
  const port = cut < 0 ? 0 : Number(f.address.slice(cut + 1));
  const err = new Error(`bind ${code} ${f.address}: ${f.message}`);
  return Object.assign(err, { code, errno: uvErrno(code) ?? (typeof f.osErrno === 'number' ? -f.osErrno : undefined), syscall: 'bind', address, port });
}

/** Throws a TypeError naming the first key of `options` that is not in `known`. */
export function checkOptionKeys(options: object, known: readonly string[], what: string): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      const near = known.find((k) => k.toLowerCase() === key.toLowerCase());
      throw Object.assign(
        new TypeError(
          `unknown ${what} option ${JSON.stringify(key)}${near ? ` (did you mean ${JSON.stringify(near)}?)` : ''}; known: ${known.join(', ')}`,
        ),
        { code: 'ERR_NETMESSAGES_UNKNOWN_OPTION' },
      );
    }
  }
}
