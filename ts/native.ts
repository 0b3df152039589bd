// The one place that loads the native addon (built by napi-rs into ../native).
import type * as NativeTypes from '../native/index.js';

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const native: typeof NativeTypes = require('../native/index.js');
export type { NativeEndpoint, NativeEvent, NativeBatch, NativeSessionInfo, ConfigProblem } from '../native/index.js';
