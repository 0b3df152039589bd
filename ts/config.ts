// Configuration across the boundary: JS objects checked here for shape, values checked by
// the core (one table in Rust: names, ranges, defaults), problems turned into JS errors.
import { CONFIG_KEYS, type Config } from './generated';

export type { Config } from './generated';

/** Throws the JS error for a problem the core reported, if any. */
export function configProblem(p: { kind: string; message: string } | null): void {
  if (p === null) return;
  if (p.kind === 'range') throw new RangeError(p.message);
  throw new TypeError(p.message);
}

/** The numeric entries of a config object (its keys are checked by the core). */
export function configValues(config: unknown): Record<string, number> {
  if (config === undefined) return {};
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw new TypeError('config must be an object');
  }
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(config)) {
    if (typeof v !== 'number') throw new TypeError(`config ${k} must be a number, got ${typeof v}`);
    out[k] = v;
  }
  return out;
}

/** The core's configuration as a `Config`: every key present, or an error naming the gap. */
export function toConfig(values: Record<string, number>): Config {
  const out: Partial<Record<keyof Config, number>> = {};
  for (const k of CONFIG_KEYS) {
    const v = values[k];
    if (typeof v !== 'number') throw new Error(`netmessages: the native config lacks ${k}`);
    out[k] = v;
  }
  return out as Config;
}
