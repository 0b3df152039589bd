// ava configuration of the interop suite (`npm run test:interop`): the tests against a stock
// GameNetworkingSockets peer, kept out of `npm test`'s glob. See docs/INTEROP.md.
export default {
  files: ['__test__/interop/**/*.test.mjs'],
  timeout: '120s',
  workerThreads: false,
  concurrency: 2,
};
