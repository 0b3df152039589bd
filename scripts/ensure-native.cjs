#!/usr/bin/env node
// Makes sure the native addon exists for this platform.
// In a source checkout (binding/ present) it runs the napi build, which cargo makes a no-op
// when nothing changed; in an installed package it only checks that a binary loads.
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

try {
  require(path.join(root, 'native', 'index.js'));
} catch (e) {
  console.error(`netmessages: no native binary for ${process.platform}-${process.arch} could be loaded.\n${e && e.message}`);
  process.exit(1);
}
