// `netmessages keygen` and `netmessages cert`: make identity keys and certificates.
//
// Keys are stored as hex text (private keys with file mode 0600); certificates as the raw
// bytes `create({ certificate })` takes.
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { generateKeyPair, issueCertificate, publicKeyOf } from '../../dist/index.mjs';

function readKey(value, what) {
  // A file holding hex, or the hex itself.
  let text = value;
  try {
    text = readFileSync(value, 'utf8');
  } catch {
    // not a file: take the argument as hex
  }
  const hex = text.trim();
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new Error(`${what}: expected 32 bytes of hex (or a file holding them)`);
  return Buffer.from(hex, 'hex');
}

export const keygen = {
  summary: 'make an Ed25519 key pair (identity key, or a CA key)',
  async main(argv) {
    const { values } = parseArgs({ args: argv, options: { out: { type: 'string' }, help: { type: 'boolean' } } });
    if (values.help) {
      process.stdout.write(
        'usage: netmessages keygen [--out NAME]\n\n' +
          'Without --out, prints the private and public key as hex.\n' +
          'With --out NAME, writes NAME.key (private, mode 0600) and NAME.pub (public).\n',
      );
      return 0;
    }
    const k = generateKeyPair();
    if (values.out) {
      writeFileSync(`${values.out}.key`, `${k.privateKey.toString('hex')}\n`, { mode: 0o600 });
      writeFileSync(`${values.out}.pub`, `${k.publicKey.toString('hex')}\n`);
      process.stdout.write(`wrote ${values.out}.key (keep secret) and ${values.out}.pub\n`);
    } else {
      process.stdout.write(`private ${k.privateKey.toString('hex')}\npublic  ${k.publicKey.toString('hex')}\n`);
    }
    return 0;
  },
};

export const cert = {
  summary: 'issue a certificate binding an identity to a public key, signed by a CA key',
  async main(argv) {
    const { values } = parseArgs({
      args: argv,
      options: {
        ca: { type: 'string' },
        identity: { type: 'string' },
        key: { type: 'string' },
        days: { type: 'string', default: '365' },
        out: { type: 'string' },
        help: { type: 'boolean' },
      },
    });
    if (values.help || !values.ca || !values.identity || !values.key || !values.out) {
      (values.help ? process.stdout : process.stderr).write(
        'usage: netmessages cert --ca CA.key --identity str:NAME --key NAME.pub|NAME.key --out NAME.cert [--days 365]\n\n' +
          '--key takes the subject\'s public key, or its private key (only the public half is used).\n' +
          'Peers that list the CA\'s public key in trustedCAs then know the subject by that identity.\n',
      );
      return values.help ? 0 : 2;
    }
    const days = Number(values.days);
    if (!(days > 0)) throw new Error('--days must be a positive number');
    const caKey = readKey(values.ca, '--ca');
    let subject = readKey(values.key, '--key');
    if (/\.key$/.test(values.key)) subject = publicKeyOf(subject);
    const bytes = issueCertificate({ caPrivateKey: caKey, publicKey: subject, identity: values.identity, validSeconds: days * 86400 });
    writeFileSync(values.out, bytes);
    process.stdout.write(`wrote ${values.out} (${bytes.length} bytes) for ${values.identity}, valid ${days} days\n`);
    return 0;
  },
};
