// Waiting for room after `LimitExceeded`, the way Node streams wait for 'drain': one promise
// per wait, keyed by peer, settled by the endpoint's 'writable' event (resolve), by the
// session ending or the endpoint closing (reject), or by an AbortSignal. Reusable by any
// class that has per-peer (or per-connection) send buffers.

/** The error an aborted wait ends with, shaped as Node's own (`events.once`, timers/promises). */
export function abortError(signal: AbortSignal): Error {
  const err = new Error('The operation was aborted', { cause: signal.reason });
  err.name = 'AbortError';
  return Object.assign(err, { code: 'ABORT_ERR' });
}

interface Waiter {
  resolve: () => void;
  reject: (e: unknown) => void;
  cleanup: () => void;
}

/** Pending waits, by key. */
export class WritableWaiters<K> {
  readonly #waiting = new Map<K, Set<Waiter>>();

  /** Whether anyone waits for `key`. */
  has(key: K): boolean {
    return this.#waiting.has(key);
  }

  /** A promise settled by {@link resolve} / {@link reject} for `key`, or by `signal`. */
  wait(key: K, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortError(signal));
    return new Promise<void>((resolve, reject) => {
      let set = this.#waiting.get(key);
      if (set === undefined) {
        set = new Set();
        this.#waiting.set(key, set);
      }
      const onAbort = (): void => {
        this.#remove(key, w);
        reject(abortError(signal as AbortSignal));
      };
      const w: Waiter = {
        resolve,
        reject,
        cleanup: () => signal?.removeEventListener('abort', onAbort),
      };
      set.add(w);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Resolves every wait for `key`. */
  resolve(key: K): void {
    this.#settle(key, (w) => w.resolve());
  }

  /** Rejects every wait for `key` with `err`. */
  reject(key: K, err: unknown): void {
    this.#settle(key, (w) => w.reject(err));
  }

  /** Rejects every wait (the endpoint closed). */
  rejectAll(err: unknown): void {
    for (const key of [...this.#waiting.keys()]) this.reject(key, err);
  }

  #settle(key: K, f: (w: Waiter) => void): void {
    const set = this.#waiting.get(key);
    if (set === undefined) return;
    this.#waiting.delete(key);
    for (const w of set) {
      w.cleanup();
      f(w);
    }
  }

  #remove(key: K, w: Waiter): void {
    const set = this.#waiting.get(key);
    if (set === undefined) return;
    set.delete(w);
    w.cleanup();
    if (set.size === 0) this.#waiting.delete(key);
  }
}
