// A small signaling client: the reference for the Rust client phase B puts in the driver, and
// what the tests use. Connects, answers the challenge with the identity key, then sends and
// receives rendezvous blobs by identity.
import { EventEmitter } from 'node:events';
import WebSocket from 'ws';

import { signWith } from './cert.mjs';
import { challengeMessage } from './server.mjs';

export class SignalClient extends EventEmitter {
  /**
   * `url`: ws://host:port. `identity`: text form (str:alice). `privateKey`: the 32-byte
   * Ed25519 seed the certificate is for. `certificate`: the CertificateSigned bytes.
   */
  constructor(url, { identity, privateKey, certificate }) {
    super();
    this.url = url;
    this.identity = identity;
    this.privateKey = Buffer.from(privateKey);
    this.certificate = Buffer.from(certificate);
    this.nextId = 1;
  }

  /** Resolves once registered; rejects with the server's error. */
  connect() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      let done = false;
      const fail = (e) => {
        if (!done) {
          done = true;
          reject(e);
        }
      };
      ws.on('error', fail);
      ws.on('close', (code, reason) => {
        fail(Object.assign(new Error(`closed ${code} ${reason}`), { code: 'closed', closeCode: code }));
        this.emit('close', code, reason.toString());
      });
      ws.on('message', (raw) => {
        let msg;
        try {
          msg = JSON.parse(raw.toString('utf8'));
        } catch {
          return;
        }
        switch (msg.type) {
          case 'challenge': {
            const sig = signWith(this.privateKey, challengeMessage(Buffer.from(msg.nonce, 'base64'), this.identity));
            ws.send(JSON.stringify({ type: 'register', identity: this.identity, certificate: this.certificate.toString('base64'), signature: sig.toString('base64') }));
            break;
          }
          case 'registered':
            done = true;
            resolve(this);
            break;
          case 'error':
            fail(Object.assign(new Error(msg.message), { code: msg.code }));
            this.emit('server-error', msg);
            break;
          case 'signal':
            this.emit('signal', msg.from, Buffer.from(msg.data, 'base64'));
            break;
          case 'undeliverable':
            this.emit('undeliverable', msg.to, msg.reason, msg.id);
            break;
          case 'replaced':
            this.emit('replaced');
            break;
          default:
            break;
        }
      });
    });
  }

  /** Sends a blob to `to`; returns the id an `undeliverable` event would carry. */
  send(to, data) {
    const id = this.nextId++;
    this.ws.send(JSON.stringify({ type: 'signal', to, data: Buffer.from(data).toString('base64'), id }));
    return id;
  }

  close() {
    this.ws?.close();
  }
}
