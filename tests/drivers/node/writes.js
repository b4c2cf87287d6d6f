// Writes through node-postgres as applications send them: a transaction
// whose rows go to several shards (committed, rolled back, failing), a
// parameterized multi-row INSERT with RETURNING in VALUES order, named
// prepared statements, and a pool of clients inserting concurrently.
//
// Run by tests/drivers.rs against shardproxy and against one plain
// Postgres with the same arguments; the test compares the tables.
// Args: connection URL, first id. Exits 1 when an outcome differs from
// what Postgres does.
'use strict';
const { Client, Pool } = require('pg');

function check(ok, what) {
  if (!ok) {
    console.error('FAILED: ' + what);
    process.exit(1);
  }
}

const INS = 'insert into node_rows (id, v) values ($1, $2)';

async function count(c, lo, hi) {
  const r = await c.query('select count(*) as n from node_rows where id >= $1 and id < $2', [lo, hi]);
  return Number(r.rows[0].n);
}

async function main() {
  const [url, b] = process.argv.slice(2);
  const base = Number(b);
  const c = new Client({ connectionString: url });
  await c.connect();

  await c.query('BEGIN');
  for (let i = 0; i < 20; i++) await c.query(INS, [base + i, 'tx']);
  await c.query('COMMIT');

  await c.query('BEGIN');
  for (let i = 0; i < 10; i++) await c.query(INS, [base + 100 + i, 'rolled back']);
  await c.query('ROLLBACK');
  check((await count(c, base + 100, base + 110)) === 0, 'a rolled back transaction left rows');

  await c.query('BEGIN');
  await c.query(INS, [base + 200, 'failing']);
  await c.query(INS, [base + 201, 'failing']);
  try {
    await c.query(INS, [base, 'dup']);
    check(false, 'a duplicate key was accepted');
  } catch (e) {
    check(e.code === '23505', 'duplicate failed with ' + e.code);
  }
  try {
    await c.query(INS, [base + 202, 'after error']);
    check(false, 'a statement after an error ran');
  } catch (e) {
    check(e.code === '25P02', 'statement after error failed with ' + e.code);
  }
  await c.query('ROLLBACK');
  check((await count(c, base + 200, base + 203)) === 0, 'a failed transaction left rows');

  const ids = [];
  for (let i = 0; i < 15; i++) ids.push(base + 300 + 11 * i);
  const values = ids.map((_, i) => `($${2 * i + 1}, $${2 * i + 2})`).join(', ');
  const params = ids.flatMap((id) => [id, 'multi']);
  const r = await c.query(`insert into node_rows (id, v) values ${values} returning id`, params);
  check(JSON.stringify(r.rows.map((x) => Number(x.id))) === JSON.stringify(ids), 'multi-row RETURNING out of order');
  check(r.rowCount === 15, 'multi-row INSERT count ' + r.rowCount);

  for (let i = 0; i < 20; i++) {
    await c.query({ name: 'node-ins', text: INS, values: [base + 500 + i, 'named'] });
  }
  await c.end();

  const pool = new Pool({ connectionString: url, max: 4 });
  await Promise.all(
    [0, 1, 2, 3].map(async (w) => {
      for (let i = 0; i < 25; i++) await pool.query(INS, [base + 1000 + w * 100 + i, 'pool ' + w]);
    }),
  );
  const n = await count(pool, base, base + 10000);
  await pool.end();
  console.log('rows ' + n);
}

main().catch((e) => {
  console.error('FAILED: ' + (e.stack || e));
  process.exit(1);
});
