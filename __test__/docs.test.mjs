// The docs stay true: the README quickstart runs verbatim (only its import is pointed at the
// local build), the porting guide's source-port helpers work, and `npm run docs` builds the
// API reference from the TypeScript doc comments.
import test from 'ava';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const distUrl = pathToFileURL(path.join(root, 'dist', 'index.mjs')).href;

function run(file, args, cwd, ms) {
  return new Promise((resolve) => {
    execFile(file, args, { cwd, timeout: ms, killSignal: 'SIGKILL', shell: process.platform === 'win32' && file === 'npm' },
      (err, stdout, stderr) => resolve({ code: err ? (err.code ?? err.signal) : 0, stdout, stderr }));
  });
}

/** The fenced blocks of a Markdown section (from its heading to the next heading of that level). */
function blocks(markdown, heading, lang) {
  const start = markdown.indexOf(`${heading}\n`);
  if (start < 0) throw new Error(`no section ${heading}`);
  const level = heading.split(' ')[0];
  const rest = markdown.slice(start + heading.length);
  const end = rest.search(new RegExp(`\\n${level} `));
  const section = end < 0 ? rest : rest.slice(0, end);
  return [...section.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]);
}

const tmp = mkdtempSync(path.join(os.tmpdir(), 'netmessages-docs-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

test('README quickstart runs verbatim and prints what it says', async (t) => {
  t.timeout(30000);
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  const [code] = blocks(readme, '## Quickstart', 'js');
  t.truthy(code);
  t.true(code.split('\n').length <= 22, 'a short quickstart');
  t.regex(code, /from 'netmessages';/);
  const file = path.join(tmp, 'quickstart.mjs');
  writeFileSync(file, code.replace(/from 'netmessages';/, `from '${distUrl}';`));
  const r = await run(process.execPath, [file], tmp, 20000);
  t.is(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  t.is(lines.length, 2, r.stdout);
  t.regex(lines[0], /^ip:127\.0\.0\.1:\d+ on 0: ping$/);
  t.is(lines[1], 'reply: pong');
  t.regex(readme, /npm install && npm start/);
  t.regex(readme, /^npm test /m);
});

test('porting guide: the source-port helpers carry a reply channel', async (t) => {
  t.timeout(30000);
  const guide = readFileSync(path.join(root, 'docs', 'PORTING-FROM-DGRAM.md'), 'utf8');
  const helpers = blocks(guide, '## Adding a source port', 'js')[0].split('// A server replying')[0];
  t.regex(helpers, /function sendFrom/);
  const file = path.join(tmp, 'source-port.mjs');
  writeFileSync(file, `import { NetworkingMessages, SendFlags, EResult } from '${distUrl}';
${helpers}
const server = await NetworkingMessages.create({ bind: '127.0.0.1:0' });
server.on('sessionRequest', ({ identityRemote }) => server.acceptSessionWithUser(identityRemote));
const client = await NetworkingMessages.create({ bind: '127.0.0.1:0' });
// Two "conversations" on the client, replying on channels 5 and 9.
for (const ch of [5, 9]) if (sendFrom(client, server.identity, ch, Buffer.from('q' + ch), SendFlags.Reliable, 0) !== EResult.OK) throw new Error('send');
let served = 0;
while (served < 2) {
  for (const m of receiveFrom(server, 0)) {
    if (!m.reliable) throw new Error('flags');
    sendFrom(server, m.identity, 0, Buffer.from('a:' + m.body), SendFlags.Reliable, m.channel);
    served++;
  }
  await new Promise((r) => setTimeout(r, 5));
}
const got = [];
while (got.length < 2) {
  for (const ch of [5, 9]) for (const m of receiveFrom(client, ch)) got.push(ch + '=' + m.body + '<-' + m.channel);
  await new Promise((r) => setTimeout(r, 5));
}
console.log(got.sort().join(' '));
await Promise.all([client.close(), server.close()]);
`);
  const r = await run(process.execPath, [file], tmp, 20000);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout.trim(), '5=a:q5<-0 9=a:q9<-0');
});

test('npm run docs builds the API reference from the doc comments into docs/api', async (t) => {
  t.timeout(120000);
  const out = path.join(root, 'docs', 'api');
  const r = await run('npm', ['run', 'docs'], root, 110000);
  t.is(r.code, 0, `${r.stdout}\n${r.stderr}`);
  t.true(existsSync(path.join(out, 'index.html')));
  const cls = readFileSync(path.join(out, 'classes', 'NetworkingMessages.html'), 'utf8');
  t.regex(cls, /sendMessageToUser/);
  t.regex(cls, /opening a session if needed/, 'doc comment text is in the page');
  for (const page of ['classes/Identity.html', 'enums/SendFlags.html', 'enums/EResult.html', 'interfaces/Config.html']) {
    t.true(existsSync(path.join(out, page)), page);
  }
  t.regex(readFileSync(path.join(root, '.gitignore'), 'utf8'), /^docs\/api\/$/m, 'docs/api is not committed');
});

test('README links resolve and CHANGELOG exists', (t) => {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  const links = [...readme.matchAll(/\]\(([^)#]+)\)/g)].map((m) => m[1]).filter((l) => !/^https?:/.test(l));
  t.true(links.length >= 5);
  for (const l of links) t.true(existsSync(path.join(root, l)), l);
  t.regex(readFileSync(path.join(root, 'CHANGELOG.md'), 'utf8'), /^## \[Unreleased\]/m);
});
