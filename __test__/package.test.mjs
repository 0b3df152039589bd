import test from 'ava';
import { createRequire } from 'node:module';

import * as esm from '../dist/index.mjs';

const require = createRequire(import.meta.url);

test('require and import expose the same API, one instance', (t) => {
  const cjs = require('../dist/index.js');
  const cjsNames = Object.keys(cjs).filter((k) => k !== '__esModule').sort();
  const esmNames = Object.keys(esm).filter((k) => k !== 'default').sort();
  t.deepEqual(esmNames, cjsNames);
  t.is(esm.NetworkingMessages, cjs.NetworkingMessages);
  for (const name of ['NetworkingMessages', 'Identity', 'SendFlags', 'EResult', 'ConnectionState', 'IdentityType', 'ConnectionEnd']) {
    t.true(cjsNames.includes(name), name);
  }
});

test("Steam's numeric values", (t) => {
  const { SendFlags, EResult, ConnectionState, IdentityType, ConnectionEnd } = esm;
  t.deepEqual(
    [SendFlags.Unreliable, SendFlags.NoNagle, SendFlags.UnreliableNoNagle, SendFlags.NoDelay, SendFlags.UnreliableNoDelay,
      SendFlags.Reliable, SendFlags.ReliableNoNagle, SendFlags.UseCurrentThread, SendFlags.AutoRestartBrokenSession],
    [0, 1, 1, 4, 5, 8, 9, 16, 32],
  );
  t.deepEqual(
    [EResult.OK, EResult.Fail, EResult.NoConnection, EResult.InvalidParam, EResult.InvalidState, EResult.Timeout,
      EResult.LimitExceeded, EResult.DuplicateRequest, EResult.ConnectFailed, EResult.Ignored],
    [1, 2, 3, 8, 11, 16, 25, 29, 35, 41],
  );
  t.deepEqual(
    [ConnectionState.None, ConnectionState.Connecting, ConnectionState.FindingRoute, ConnectionState.Connected,
      ConnectionState.ClosedByPeer, ConnectionState.ProblemDetectedLocally, ConnectionState.FinWait,
      ConnectionState.Linger, ConnectionState.Dead],
    [0, 1, 2, 3, 4, 5, -1, -2, -3],
  );
  t.deepEqual([IdentityType.Invalid, IdentityType.IPAddress, IdentityType.GenericString, IdentityType.GenericBytes, IdentityType.SteamID], [0, 1, 2, 3, 16]);
  t.deepEqual(
    [ConnectionEnd.Remote_Timeout, ConnectionEnd.Remote_BadCrypt, ConnectionEnd.Remote_BadCert, ConnectionEnd.Remote_BadProtocolVersion,
      ConnectionEnd.Misc_Generic, ConnectionEnd.Misc_InternalError, ConnectionEnd.Misc_Timeout, ConnectionEnd.Misc_PeerSentNoConnection],
    [4001, 4002, 4003, 4006, 5001, 5002, 5003, 5010],
  );
});

test('Identity text forms', (t) => {
  const { Identity, IdentityType } = esm;
  t.is(Identity.fromIp('1.2.3.4:27015').toString(), 'ip:1.2.3.4:27015');
  t.is(Identity.fromIp('[::1]:27015').toString(), 'ip:[::1]:27015');
  t.is(Identity.fromString('alice').toString(), 'str:alice');
  t.is(Identity.fromBytes(new Uint8Array([0, 255, 16])).toString(), 'gen:00ff10');
  t.is(Identity.fromSteamId(76561197960287930n).toString(), 'steamid:76561197960287930');
  t.is(Identity.parse('str:alice').type, IdentityType.GenericString);
  t.true(Identity.parse('ip:1.2.3.4:5').equals('ip:1.2.3.4:5'));
  t.false(Identity.parse('ip:1.2.3.4:5').equals('not an identity'));
  t.throws(() => Identity.fromString(''), { instanceOf: TypeError });
  t.throws(() => Identity.fromString('x'.repeat(32)), { instanceOf: TypeError });
  t.throws(() => Identity.fromBytes(new Uint8Array(33)), { instanceOf: TypeError });
  t.throws(() => Identity.fromSteamId(0n), { instanceOf: RangeError });
  t.throws(() => Identity.parse('ip:nohost'), { instanceOf: TypeError });
});
