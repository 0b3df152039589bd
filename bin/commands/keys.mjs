// `netmessages keygen` and `netmessages cert`: make identity keys and certificates.
//
// Keys are stored as hex text (private keys with file mode 0600); certificates as the raw
// bytes `create({ certificate })` takes. Existing files are never overwritten without
// --force. A mistake is a UsageError: the dispatcher prints its message, no stack trace.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { generateKeyPair, issueCertificate, keyIdOf, publicKeyOf } from 'netmessages';

/** A mistake on the command line or in its files: printed as `netmessages <cmd>: message`, exit code 2. */
export class UsageError extends Error {
  constructor(message) {
    super(message);
    this.name = 'UsageError';
  }
}

function parse(argv, options) {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: 'boolean' } } }).values;
  } catch (e) {
    throw new UsageError(e.message);
  }
}

function refuseOverwrite(files, force, why = '') {
  if (force) return;
  const there = files.filter((f) => existsSync(f));
  if (there.length > 0) {
    throw new UsageError(`${there.join(' and ')} already exist${there.length === 1 ? 's' : ''}: pass --force to overwrite${why}`);
  }
}

/**
 * Reads a key: a file holding hex, or the hex itself. `want` is 'private', 'public' or
 * 'either'. Public and private keys are both 32 bytes; keygen names them NAME.pub and
 * NAME.key, and a file named .pub where a private key is needed (or .key where a public
 * one is) is refused.
 */
function readKey(value, what, want) {
  let text = value;
  let file;
  if (existsSync(value)) {
    file = value;
    text = readFileSync(value, 'utf8');
  } else if (!/^[0-9a-fA-F]{64}$/.test(value)) {
    throw new UsageError(`${what}: no file ${JSON.stringify(value)}, and it is not 64 hex digits either`);
  }
  const hex = text.trim();
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new UsageError(`${what}: ${file ?? 'the value'} does not hold a key (32 bytes as 64 hex digits)`);
  const kind = file?.endsWith('.pub') ? 'public' : file?.endsWith('.key') ? 'private' : 'unknown';
  if (want === 'private' && kind === 'public') {
    throw new UsageError(`${what}: ${file} is a public key; this needs the private key (the .key file keygen wrote beside it)`);
  }
  return { key: Buffer.from(hex, 'hex'), kind };
}

export const keygen = {
  summary: 'make an Ed25519 key pair (identity key, or a CA key)',
  async main(argv) {
    const values = parse(argv, { out: { type: 'string' }, force: { type: 'boolean' } });
    if (values.help) {
      process.stdout.write(
        'usage: netmessages keygen [--out NAME] [--force]\n\n' +
          'Without --out, prints the private and public key as hex.\n' +
          'With --out NAME, writes NAME.key (private, mode 0600) and NAME.pub (public);\n' +
          'existing files are kept unless --force is given.\n' +
          'Also prints the public key\'s key id: what certificates signed with it name their CA by.\n',
      );
      return 0;
    }
    const k = generateKeyPair();
    const id = keyIdOf(k.publicKey);
    if (values.out) {
      const files = [`${values.out}.key`, `${values.out}.pub`];
      refuseOverwrite(files, values.force, ' (a key cannot be recovered once replaced)');
      writeFileSync(files[0], `${k.privateKey.toString('hex')}\n`, { mode: 0o600 });
      writeFileSync(files[1], `${k.publicKey.toString('hex')}\n`);
      process.stdout.write(`wrote ${files[0]} (keep secret) and ${files[1]}; key id ${id}\n`);
    } else {
      process.stdout.write(`private ${k.privateKey.toString('hex')}\npublic  ${k.publicKey.toString('hex')}\nkey id  ${id}\n`);
    }
    return 0;
  },
};

export const cert = {
  summary: 'issue a certificate binding an identity to a public key, signed by a CA key',
  async main(argv) {
    const values = parse(argv, {
      ca: { type: 'string' },
      identity: { type: 'string' },
      key: { type: 'string' },
      days: { type: 'string', default: '365' },
      out: { type: 'string' },
      force: { type: 'boolean' },
    });
    if (values.help || !values.ca || !values.identity || !values.key || !values.out) {
      (values.help ? process.stdout : process.stderr).write(
        'usage: netmessages cert --ca CA.key --identity str:NAME --key NAME.pub|NAME.key --out NAME.cert [--days 365] [--force]\n\n' +
          '--ca takes the CA\'s private key (CA.key, never CA.pub).\n' +
          '--key takes the subject\'s public key, or its private key (only the public half is used).\n' +
          'Peers that list the CA\'s public key in trustedCAs then know the subject by that identity.\n',
      );
      return values.help ? 0 : 2;
    }
    const days = Number(values.days);
    if (!(days > 0)) throw new UsageError('--days must be a positive number');
    refuseOverwrite([values.out], values.force);
    const ca = readKey(values.ca, '--ca', 'private');
    const subject = readKey(values.key, '--key', 'either');
    const publicKey = subject.kind === 'private' ? publicKeyOf(subject.key) : subject.key;
    let bytes;
    try {
      bytes = issueCertificate({ caPrivateKey: ca.key, publicKey, identity: values.identity, validSeconds: days * 86400 });
    } catch (e) {
      throw new UsageError(e.message);
    }
    writeFileSync(values.out, bytes);
    process.stdout.write(
      `wrote ${values.out} (${bytes.length} bytes) for ${values.identity}, valid ${days} days, signed by CA key id ${keyIdOf(publicKeyOf(ca.key))}\n`,
    );
    return 0;
  },
};
