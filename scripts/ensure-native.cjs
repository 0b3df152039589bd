#!/usr/bin/env node
// Makes sure the native addon exists for this platform.
// In a source checkout (binding/ present) it runs the napi build, which cargo makes a no-op
// when nothing changed; in an installed package it only checks that a binary loads, and fails
// the install with a message naming the platform and what to do if none does.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const fromSource = fs.existsSync(path.join(root, 'binding', 'Cargo.toml'));

if (fromSource) {
  const cargo = spawnSync('cargo', ['--version'], { stdio: 'ignore' });
  if (cargo.status !== 0) {
    console.error('netmessages: building from source needs a Rust toolchain (https://rustup.rs), and `cargo` was not found on PATH.');
    process.exit(1);
  }
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const r = spawnSync(npm, ['run', '--silent', 'build:native'], { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
  process.exit(r.status ?? 1);
}

// Installed package: never build (there is no binding/ to build from). dist/native.js loads
// native/index.js, which tries the binary shipped in native/ and then the platform package
// (netmessages-<platform>, an optional dependency), and explains what to do when neither loads.
try {
  require(path.join(root, 'dist', 'native.js'));
} catch (e) {
  console.error(e && e.message ? e.message : String(e));
  process.exit(1);
}
