// The escape probe for runtimes forked from the nodejs template (zygote_escape_test.cc). Runs as
// the forked node process itself: first checks this process's own confinement -- what an exec'd
// probe could not see, since execve drops capabilities and close-on-exec fds -- then runs the
// escape probe (tests/escape/probe.py, the same probe every creation path runs) as its child for
// the attempt. Usage: node_escape_shim.js PROBE ATTEMPT ARGS_JSON; prints the probe's answer.
'use strict';
const fs = require('fs');
const { spawnSync } = require('child_process');

const [probe, attempt, args] = process.argv.slice(2);
const bad = [];
const status = fs.readFileSync('/proc/self/status', 'utf8');
const field = (k) => ((status.match(new RegExp(`^${k}:\\s*(.*)$`, 'm')) || [])[1] || '').trim();
for (const k of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) {
  if (field(k) !== '0000000000000000') bad.push(`${k} ${field(k)}`);
}
if (field('NoNewPrivs') !== '1') bad.push(`NoNewPrivs ${field('NoNewPrivs')}`);
if (field('Seccomp') !== '2') bad.push(`Seccomp ${field('Seccomp')}`);
for (const k of ['Uid', 'Gid']) {
  if (!/^65534\s+65534\s+65534\s+65534$/.test(field(k))) bad.push(`${k} ${field(k)}`);
}
// Open fds: stdio, and libuv's own (made in this process after the fork): one epoll instance, one
// eventfd, and pipes held at both ends. Anything else came from the template or the worker.
const links = {};
for (const name of fs.readdirSync('/proc/self/fd')) {
  const fd = Number(name);
  if (fd <= 2) continue;
  try {
    links[fd] = fs.readlinkSync(`/proc/self/fd/${name}`);
  } catch (_) {
    // the directory listing's own fd, closed by now
  }
}
const stdio = [0, 1, 2].map((fd) => {
  try {
    return fs.readlinkSync(`/proc/self/fd/${fd}`);
  } catch (_) {
    return '';
  }
});
const count = {};
for (const l of Object.values(links)) count[l] = (count[l] || 0) + 1;
for (const [fd, l] of Object.entries(links)) {
  const own = l === 'anon_inode:[eventpoll]' || l === 'anon_inode:[eventfd]' ||
      (l.startsWith('pipe:') && count[l] === 2 && !stdio.includes(l));
  if (!own) bad.push(`fd ${fd} -> ${l}`);
}
if (count['anon_inode:[eventpoll]'] > 1 || count['anon_inode:[eventfd]'] > 1) {
  bad.push(`fds ${JSON.stringify(links)}`);
}
if (bad.length > 0) {
  process.stdout.write(JSON.stringify({ contained: false, detail: `forked node: ${bad.join('; ')}` }));
  process.exit(0);
}
const r = spawnSync('/usr/bin/python3', [probe, attempt, args], { stdio: 'inherit' });
process.exit(r.status === null ? 128 + 9 : r.status);
