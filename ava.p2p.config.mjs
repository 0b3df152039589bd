// The P2P suites: network namespaces, iptables NAT routers and coturn (root needed; they
// skip, saying why, otherwise). `npm run test:p2p`; not part of `npm test`.
export default {
  files: ['__test__/p2p/**/*.test.mjs'],
  timeout: '120s',
  workerThreads: false,
  concurrency: 1,
};
