// Delivering native events to JS listeners without letting one listener's exception take
// the others down: every listener of an event runs, every event of a batch is emitted, and
// each exception is reported afterwards (to the emitter's 'error' listeners if it has any,
// else as an uncaught exception, as Node reports a throwing listener).
import type { EventEmitter } from 'node:events';

/** Reports an exception thrown by application code we called (a listener, a callback). */
export function reportCallbackError(err: unknown, emitter?: EventEmitter): void {
  if (emitter !== undefined && emitter.listenerCount('error') > 0) {
    try {
      emitter.emit('error', err);
      return;
    } catch (e) {
      err = e;
    }
  }
  // Thrown on its own tick: the rest of the batch is delivered first, and the process then
  // sees an uncaught exception as it would from a plain EventEmitter listener.
  process.nextTick(() => {
    throw err;
  });
}

/**
 * Emits `event` to each listener in turn, isolating exceptions: a listener that throws does
 * not stop the listeners after it, and the exception is reported with
 * {@link reportCallbackError}. Returns whether the event had listeners.
 */
export function emitIsolated(emitter: EventEmitter, event: string, ...args: unknown[]): boolean {
  const listeners = emitter.rawListeners(event);
  for (const l of listeners) {
    try {
      // Raw listeners keep `once` wrappers, which remove themselves when called.
      Reflect.apply(l as (...a: unknown[]) => unknown, emitter, args);
    } catch (e) {
      reportCallbackError(e, emitter);
    }
  }
  return listeners.length > 0;
}
