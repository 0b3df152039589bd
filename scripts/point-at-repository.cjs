#!/usr/bin/env node
// Points the package at its GitHub repository before publishing: sets `repository`,
// `homepage` and `bugs` in package.json, and turns the README's relative links into links to
// the files at the published tag, so they work on the npm registry page (which shows the
// README with no files around it). The release workflow runs it with $GITHUB_REPOSITORY and
// the tag; the committed files keep relative links, which work on GitHub and in
// node_modules (docs/ and examples/ ship in the package).
//
//   node scripts/point-at-repository.cjs <owner/name> <ref> [--dir DIR]
'use strict';
const fs = require('node:fs');
const path = require('node:path');

/** The README with every relative link `](path)` made absolute for `repo` at `ref`. */
function absoluteLinks(markdown, repo, ref) {
  return markdown.replace(/\]\(([^)\s]+)\)/g, (whole, target) => {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('#')) return whole;
    const clean = target.replace(/^\.\//, '');
    return `](https://github.com/${repo}/blob/${ref}/${clean})`;
  });
}

function main(argv) {
  const [repo, ref] = argv;
  const dirAt = argv.indexOf('--dir');
  const dir = dirAt >= 0 ? argv[dirAt + 1] : path.join(__dirname, '..');
  if (!repo || !/^[\w.-]+\/[\w.-]+$/.test(repo) || !ref) {
    process.stderr.write('usage: point-at-repository.cjs <owner/name> <ref> [--dir DIR]\n');
    return 2;
  }
  const pkgPath = path.join(dir, 'package.json');
  const pkg = JSON.parse(fs.readFileSync(pkgPath, 'utf8'));
  pkg.repository = { type: 'git', url: `git+https://github.com/${repo}.git` };
  pkg.homepage = `https://github.com/${repo}#readme`;
  pkg.bugs = { url: `https://github.com/${repo}/issues` };
  fs.writeFileSync(pkgPath, `${JSON.stringify(pkg, null, 2)}\n`);
  const readmePath = path.join(dir, 'README.md');
  fs.writeFileSync(readmePath, absoluteLinks(fs.readFileSync(readmePath, 'utf8'), repo, ref));
  process.stdout.write(`package.json and README.md now point at https://github.com/${repo} (${ref})\n`);
  return 0;
}

if (require.main === module) process.exitCode = main(process.argv.slice(2));
module.exports = { absoluteLinks };
