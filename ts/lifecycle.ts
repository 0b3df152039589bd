// Node habits for objects that own a socket: `ref()` / `unref()` / `hasRef()` as on
// `net.Socket` and `dgram.Socket`, and `Symbol.asyncDispose` for `await using`. Reusable by
// every class of the package that owns native handles.

/**
 * `Symbol.asyncDispose` (Node.js 20.4 and later define it; on older versions the
 * registered symbol TypeScript's `await using` helpers fall back to).
 */
export const asyncDispose: typeof Symbol.asyncDispose =
  (Symbol as { asyncDispose?: typeof Symbol.asyncDispose }).asyncDispose ??
  (Symbol.for('Symbol.asyncDispose') as typeof Symbol.asyncDispose);

/** Whether a handle keeps the event loop alive, applied through `apply(keepAlive)`. */
export class KeepAlive {
  #ref = true;
  readonly #apply: (keepAlive: boolean) => void;

  constructor(apply: (keepAlive: boolean) => void) {
    this.#apply = apply;
  }

  /** Keeps the process alive while the handle is open (the default). */
  ref(): void {
    if (!this.#ref) {
      this.#apply(true);
      this.#ref = true;
    }
  }

  /** Lets the process exit while the handle is open, if nothing else keeps it alive. */
  unref(): void {
    if (this.#ref) {
      this.#apply(false);
      this.#ref = false;
    }
  }

  /** Whether the handle keeps the process alive. */
  hasRef(): boolean {
    return this.#ref;
  }
}
