// Side-by-side coordination benchmark against the peers: etcd and ZooKeeper.
//
//   node bench.js etcd|zookeeper [--quick]
//
// Prints CSV rows: system,operation,clients,p50_ms,p99_ms,ops_per_s
// Operations: lock+unlock (the client recipe, uncontended: each client its own
// lock name), lease grant+revoke (etcd), failover (time from SIGKILL of the
// leader to the next successful write).
'use strict';
const { execFileSync } = require('child_process');
const path = require('path');

const system = process.argv[2];
const quick = process.argv.includes('--quick');
const ops = quick ? 200 : 2000;
const clusters = path.join(__dirname, 'clusters.sh');

function pct(v, p) {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.floor(p * (s.length - 1))];
}
function row(op, clients, lat, seconds) {
  const n = lat.length;
  console.log(`${system},${op},${clients},${pct(lat, 0.5).toFixed(3)},${pct(lat, 0.99).toFixed(3)},${(n / seconds).toFixed(0)}`);
}
const now = () => Number(process.hrtime.bigint()) / 1e6;  // ms

// Runs `clients` closed loops of `fn(clientIndex)` until `total` operations are done.
async function closedLoop(clients, total, fn) {
  const lat = [];
  let issued = 0;
  const t0 = now();
  await Promise.all(Array.from({ length: clients }, async (_, c) => {
    while (issued < total) {
      issued++;
      const s = now();
      await fn(c);
      lat.push(now() - s);
    }
  }));
  return { lat, seconds: (now() - t0) / 1000 };
}

async function failover(write) {
  await write();
  const t0 = now();
  execFileSync(clusters, ['kill-leader', system]);
  while (true) {
    try {
      await write();
      return now() - t0;
    } catch (e) {
      await new Promise(r => setTimeout(r, 5));
    }
  }
}

async function etcd() {
  const { Etcd3 } = require('etcd3');
  const hosts = ['127.0.0.1:23791', '127.0.0.1:23792', '127.0.0.1:23793'];
  const pool = Array.from({ length: 64 }, () => new Etcd3({ hosts }));
  const lockOnce = async c => { const l = pool[c].lock(`bench/lock/${c}`); await l.acquire(); await l.release(); };
  await closedLoop(1, 20, lockOnce);  // warm up
  for (const clients of [1, 64]) {
    const r = await closedLoop(clients, clients === 1 ? ops : ops * 4, lockOnce);
    row('lock+unlock', clients, r.lat, r.seconds);
  }
  const leaseOnce = async c => { const l = pool[c].lease(10, { autoKeepAlive: false }); await l.grant(); await l.revoke(); };
  const r = await closedLoop(1, ops, leaseOnce);
  row('lease grant+revoke', 1, r.lat, r.seconds);
  const writer = new Etcd3({ hosts, dialTimeout: 200 });
  const ms = await failover(() => writer.put('bench/failover').value('x').exec());
  console.log(`${system},failover,1,${ms.toFixed(1)},${ms.toFixed(1)},`);
  process.exit(0);
}

async function zookeeper() {
  const zk = require('node-zookeeper-client');
  const hosts = '127.0.0.1:21811,127.0.0.1:21812,127.0.0.1:21813';
  const connect = () => new Promise((ok, fail) => {
    const c = zk.createClient(hosts, { sessionTimeout: 4000, spinDelay: 50, retries: 0 });
    c.once('connected', () => ok(c));
    c.connect();
    setTimeout(() => fail(new Error('zookeeper connect timeout')), 10000);
  });
  const call = (c, m, ...a) => new Promise((ok, fail) => c[m](...a, (e, r) => (e ? fail(e) : ok(r))));
  const pool = [];
  for (let i = 0; i < 64; i++) pool.push(await connect());
  await call(pool[0], 'mkdirp', '/bench/locks');
  for (let i = 0; i < 64; i++) await call(pool[0], 'mkdirp', `/bench/locks/${i}`);
  // The lock recipe: an ephemeral sequential node, then getChildren; lowest wins (uncontended: always).
  const lockOnce = async c => {
    const me = await call(pool[c], 'create', `/bench/locks/${c}/lock-`, null, zk.CreateMode.EPHEMERAL_SEQUENTIAL);
    const kids = await call(pool[c], 'getChildren', `/bench/locks/${c}`);
    kids.sort();
    if (`/bench/locks/${c}/${kids[0]}` !== me) throw new Error('uncontended lock not acquired');
    await call(pool[c], 'remove', me, -1);
  };
  await closedLoop(1, 20, lockOnce);
  for (const clients of [1, 64]) {
    const r = await closedLoop(clients, clients === 1 ? ops : ops * 4, lockOnce);
    row('lock+unlock', clients, r.lat, r.seconds);
  }
  await call(pool[0], 'mkdirp', '/bench/failover');
  const writer = pool[0];
  const ms = await failover(() => Promise.race([
    call(writer, 'setData', '/bench/failover', Buffer.from('x'), -1),
    new Promise((_, fail) => setTimeout(() => fail(new Error('timeout')), 200)),
  ]));
  console.log(`${system},failover,1,${ms.toFixed(1)},${ms.toFixed(1)},`);
  process.exit(0);
}

if (system === 'etcd') etcd().catch(e => { console.error(e); process.exit(1); });
else if (system === 'zookeeper') zookeeper().catch(e => { console.error(e); process.exit(1); });
else { console.error('usage: node bench.js etcd|zookeeper [--quick]'); process.exit(2); }
