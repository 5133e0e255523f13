// Side-by-side coordination benchmark against the peers: etcd and ZooKeeper.
//
//   node bench.js etcd|zookeeper [--quick]
//
// Prints CSV rows: system,operation,clients,p50_ms,p99_ms,ops_per_s
// Operations: lock+unlock (the client recipe, uncontended: each client its own
// lock name), lease grant+revoke (etcd), failover (time from SIGKILL of the
// leader to the next successful write); watch (etcd): put->event latency and
// events delivered per second, the definition in watchBench.
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

const sleep = ms => new Promise(r => setTimeout(r, ms));

// The watch benchmark, the same definition as `coord_client --bench --watchers`:
// `writers` clients put `total` keys under a fresh prefix in closed loops
// (putKey(writer, key)) while `watchers` other clients watch the prefix
// (watchPrefix(watcher, prefix, onKey) resolves, once the watch is in place,
// to its cancel function). Each (put, watcher) pair is one latency sample,
// from the put call to the watcher's delivery on this process's clock; the
// throughput is events delivered to all watchers per second, from the first
// put to the last delivery.
async function watchBench(writers, watchers, total, putKey, watchPrefix) {
  const prefix = `bench/watch/${process.pid}-${writers}-${watchers}/`;
  const measured = prefix + 'k';
  const putAt = new Array(total).fill(-1);
  const expected = total * watchers;
  const lat = [];
  const warmed = new Array(watchers).fill(false);
  let warm = 0, lastDelivery = 0, allDelivered;
  const delivered = new Promise(r => (allDelivered = r));
  const cancels = [];
  for (let w = 0; w < watchers; w++) {
    cancels.push(await watchPrefix(w, prefix, key => {
      const t = now();
      if (!key.startsWith(measured)) {  // a warm-up key: this watcher is in place
        if (!warmed[w]) { warmed[w] = true; warm++; }
        return;
      }
      const i = Number(key.slice(measured.length));
      if (!(putAt[i] >= 0)) return;
      lat.push(t - putAt[i]);
      lastDelivery = t;
      if (lat.length === expected) allDelivered();
    }));
  }
  // Warm-up, as dcp's: put a warm-up key until every watcher has seen one.
  const giveUp = now() + 30000;
  while (warm < watchers) {
    if (now() > giveUp) throw new Error(`only ${warm} of ${watchers} watches in place`);
    await putKey(0, prefix + 'warm');
    await sleep(20);
  }
  let issued = 0;
  const t0 = now();
  await Promise.all(Array.from({ length: writers }, async (_, c) => {
    while (issued < total) {
      const i = issued++;
      putAt[i] = now();
      await putKey(c, measured + i);
    }
  }));
  await Promise.race([delivered, sleep(30000)]);
  for (const cancel of cancels) await cancel();
  if (lat.length < expected) console.error(`${system}: ${expected - lat.length} watch deliveries missing`);
  row(`watch put->event (${writers} writer${writers === 1 ? '' : 's'})`, watchers, lat, (lastDelivery - t0) / 1000);
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
  // Watches: every watcher its own client (as dcp's: its own node), writers from the pool.
  const watchPool = Array.from({ length: 16 }, () => new Etcd3({ hosts }));
  const value = 'x'.repeat(16);
  const putKey = (c, key) => pool[c].put(key).value(value).exec();
  const watchPrefix = async (w, prefix, onKey) => {
    const watcher = await watchPool[w].watch().prefix(prefix).create();
    watcher.on('put', kv => onKey(kv.key.toString()));
    return () => watcher.cancel();
  };
  for (const [writers, total] of [[1, ops], [64, ops * 4]])
    for (const watchers of [1, 16]) await watchBench(writers, watchers, total, putKey, watchPrefix);
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
