// Interop with a stock GameNetworkingSockets peer over half a minute: a session left idle
// right after connecting (keepalives), and the connection-quality reports both sides send
// (GNS sends its first after 20-30 s of traffic). These run concurrently.
import { DIRECTIONS, EResult, GnsState, SendFlags, connectPair, exchange, interop, makeBody, nmSend, sleep } from './harness.mjs';
import { ConnectionState } from '../../dist/index.mjs';

for (const dir of DIRECTIONS) {
  for (const last of ['netmessages', 'GNS']) {
    interop(
      `25 s idle right after connecting (${last} spoke last), then traffic (${dir})`,
      async (t) => {
        const s = await connectPair(t, dir);
        await sleep(300); // let the hellos' acks settle
        // Who heard from the other last sends the first keepalive 10 s later: the other side.
        if (last === 'netmessages') t.is(nmSend(s.nm, s.peerId, 'last word', SendFlags.Unreliable, 9), EResult.OK);
        else await s.gns.sendMessages(s.conn, { text: 'last word', flags: SendFlags.Unreliable, channel: 9 });
        await sleep(25_000);
        t.deepEqual(s.nm.failures, [], 'netmessages kept the idle session');
        t.is(s.nm.getSessionConnectionInfo(s.peerId).state, ConnectionState.Connected);
        const st = await s.gns.status(s.conn);
        t.is(st.state, GnsState.Connected, 'GNS kept the idle connection');
        t.log(`after the idle time: netmessages ping ${s.nm.getSessionConnectionInfo(s.peerId).status.ping} ms, GNS ping ${st.ping} ms`);
        await exchange(t, s, { reliable: 10, unreliable: 10, ms: 8000 });
      },
      // When netmessages spoke last, GNS's keepalive is due later than ours, so ours goes first.
      { serial: false, timeout: 90_000 },
    );
  }

  interop(
    `our keepalives ask GNS for an immediate reply, as GNS's own do (${dir})`,
    async (t) => {
      // GNS logs each stats blob it receives at Debug level ("Recv UDP stats: ..."). It replies
      // at once only to ACK_REQUEST_E2E|ACK_REQUEST_IMMEDIATE (2|4), what its own keepalives
      // carry; a blob with 4 alone gets only the plain ack of the packet, some 250 ms later.
      const s = await connectPair(t, dir, { gnsInit: { logLevel: 7 }, nmOptions: { config: { timeoutConnected: 3000 } } });
      await sleep(300);
      t.is(nmSend(s.nm, s.peerId, 'last word', SendFlags.Unreliable, 9), EResult.OK);
      await sleep(3500); // our keepalive interval is timeoutConnected / 3
      const blobs = s.gns.grepLog(/Recv UDP stats:/);
      t.log(blobs.slice(0, 3).join('\n'));
      t.true(blobs.length > 0, 'netmessages sent keepalives');
      t.true(
        blobs.every((l) => !/request_ack_immediate/.test(l) || /request_ack request_ack_immediate/.test(l)),
        'every keepalive sets ACK_REQUEST_E2E with ACK_REQUEST_IMMEDIATE',
      );
      t.deepEqual(s.nm.failures, []);
    },
    { serial: false },
  );

  interop(
    `connection quality reaches the other side (m_flConnectionQualityRemote) (${dir})`,
    async (t) => {
      const s = await connectPair(t, dir);
      // Traffic both ways for 32 s: GNS reports its instantaneous stats 20-30 s into a
      // connection that carries traffic, and expects the peer's on the same schedule.
      await s.gns.pump(s.conn, { everyMs: 50, size: 200, channel: 1, seed: 900 });
      let i = 0;
      const pump = setInterval(() => nmSend(s.nm, s.peerId, makeBody(i++, 901, 200), SendFlags.Reliable, 1), 50);
      t.teardown(() => clearInterval(pump));
      await sleep(32_000);
      clearInterval(pump);
      const gnsStatus = await s.gns.status(s.conn, { detail: true });
      t.log(`GNS's detailed status on the remote side: ${gnsStatus.detail.split('\n').filter((l) => /remote|No rate/i.test(l)).join(' | ')}`);
      const ours = s.nm.getSessionConnectionInfo(s.peerId).status;
      t.log(`GNS: qualityLocal ${gnsStatus.qualityLocal}, qualityRemote ${gnsStatus.qualityRemote}; netmessages: local ${ours.connectionQualityLocal}, remote ${ours.connectionQualityRemote}`);
      t.deepEqual(s.nm.failures, []);
      t.true(ours.connectionQualityRemote >= 0, 'netmessages has the quality GNS reported');
      t.true(gnsStatus.qualityRemote >= 0, 'GNS has the quality netmessages reported ("No rate stats received from remote host" otherwise)');
      t.regex(gnsStatus.detail, /Rate stats received from remote host/, 'GNS received our instantaneous stats');
      t.is(nmSend(s.nm, s.peerId, 'still here', SendFlags.Reliable, 2), EResult.OK);
    },
    { serial: false, timeout: 90_000 },
  );
}
