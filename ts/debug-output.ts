// The process-wide debug log (Steam's `SetDebugOutputFunction`): one output function for
// every endpoint, fed by the Rust core's `tracing` events (filtered, rate-limited) and by
// the TS layer's own reasons (a refused argument, a failed send). Off by default; the
// environment variable NETMESSAGES_LOG turns it on at load, printing to stderr.
//
// Reusable: any class of the package logs through `debugLine` (cheap when off: one
// comparison against a cached level, no native call, no string built).
import { DebugOutputType } from './generated';
import { reportCallbackError } from './dispatch';
import { native } from './native';

/** Receives one line of the debug log, with its level. */
export type DebugOutputFunction = (level: DebugOutputType, message: string) => void;

let level: DebugOutputType = DebugOutputType.None;

/**
 * Sets the detail level and the function that receives the debug log, for every endpoint
 * in the process (Steam's `SetDebugOutputFunction`). Lines at `detailLevel` or more severe
 * (a lower value) are delivered, on the main thread, a little after they happen; each kind
 * of line is rate-limited (a burst of 50, then 20 a second) and the next line says how
 * many were suppressed. `null` (or `DebugOutputType.None`) turns the log off, which costs
 * nothing on the hot paths. A throwing function is reported as an uncaught exception; the
 * log carries on.
 */
export function setDebugOutputFunction(detailLevel: DebugOutputType, fn: DebugOutputFunction | null): void {
  if (typeof detailLevel !== 'number' || !Number.isInteger(detailLevel) || detailLevel < 0) {
    throw new TypeError(`detailLevel must be a DebugOutputType value (0 to 8), got ${String(detailLevel)}`);
  }
  if (fn !== null && typeof fn !== 'function') throw new TypeError('the debug output function must be a function or null');
  if (fn === null || detailLevel === DebugOutputType.None) {
    level = DebugOutputType.None;
    native.setDebugOutput(0, null);
    return;
  }
  level = Math.min(detailLevel, DebugOutputType.Everything) as DebugOutputType;
  native.setDebugOutput(level, (lineLevel: number, line: string) => {
    try {
      fn(lineLevel as DebugOutputType, line);
    } catch (e) {
      reportCallbackError(e);
    }
  });
}

/** The detail level in force (`DebugOutputType.None` when the log is off). */
export function getDebugOutputLevel(): DebugOutputType {
  return level;
}

/** Whether a line at `lineLevel` would be delivered. */
export function debugEnabled(lineLevel: DebugOutputType): boolean {
  return lineLevel !== DebugOutputType.None && lineLevel <= level;
}

/**
 * Logs a line from the TS layer at `lineLevel`, if enabled. `key` groups lines for the rate
 * limit (use a fixed string per kind of line); `text` may be a function, called only when
 * the line is delivered.
 */
export function debugLine(lineLevel: DebugOutputType, key: string, text: string | (() => string)): void {
  if (!debugEnabled(lineLevel)) return;
  native.debugLine(lineLevel, key, typeof text === 'function' ? text() : text);
}

const NAMES: Record<string, DebugOutputType> = {
  none: DebugOutputType.None,
  off: DebugOutputType.None,
  bug: DebugOutputType.Bug,
  error: DebugOutputType.Error,
  important: DebugOutputType.Important,
  warning: DebugOutputType.Warning,
  warn: DebugOutputType.Warning,
  msg: DebugOutputType.Msg,
  info: DebugOutputType.Msg,
  verbose: DebugOutputType.Verbose,
  debug: DebugOutputType.Debug,
  everything: DebugOutputType.Everything,
  trace: DebugOutputType.Everything,
};

/** A level from its name (`warning`, `msg`, `debug`, ... as in DebugOutputType, any case) or number. */
export function parseDebugLevel(text: string): DebugOutputType | undefined {
  const t = text.trim().toLowerCase();
  if (/^\d+$/.test(t)) return Math.min(Number(t), DebugOutputType.Everything) as DebugOutputType;
  return Object.hasOwn(NAMES, t) ? NAMES[t] : undefined;
}

/** The name of a level, for printing. */
export function debugLevelName(l: DebugOutputType): string {
  return DebugOutputType[l] ?? String(l);
}

/** Prints lines to stderr as `netmessages[Warning] ...`: what NETMESSAGES_LOG uses. */
export const stderrDebugOutput: DebugOutputFunction = (l, message) => {
  process.stderr.write(`netmessages[${debugLevelName(l)}] ${message}\n`);
};

function fromEnvironment(): void {
  const value = process.env.NETMESSAGES_LOG;
  if (value === undefined || value === '') return;
  const parsed = parseDebugLevel(value);
  if (parsed === undefined) {
    process.emitWarning(
      `NETMESSAGES_LOG=${value} is not a level: use one of ${Object.keys(NAMES).join(', ')} or 0 to 8`,
      { code: 'NETMESSAGES_LOG' },
    );
    return;
  }
  setDebugOutputFunction(parsed, parsed === DebugOutputType.None ? null : stderrDebugOutput);
}

fromEnvironment();
