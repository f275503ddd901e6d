import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Client } from 'pg';
import { migrate } from '../src/database/data-source';
import { startEmbeddedPostgres } from '../src/database/embedded';
import { APP_PASSWORD, TEMPLATE_DB } from './support/db';
import { freePort } from './support/net';

/**
 * `npm test`: starts a throwaway embedded PostgreSQL, migrates a template
 * database once, runs every compiled test file with Node's test runner
 * (each file clones the template into a database of its own), stops the
 * cluster, and ends with one line "N passed, N failed".
 */


function testFiles(dir: string, filter: string[]): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...testFiles(p, filter));
    else if (name.endsWith('.test.js') && (filter.length === 0 || filter.some((f) => p.includes(f)))) out.push(p);
  }
  return out.sort();
}

async function main(): Promise<number> {
  const root = resolve(__dirname, '..', '..');
  const dataDir = join(root, '.test-data', `run-${process.pid}`);
  const password = randomBytes(12).toString('hex');
  const port = await freePort();
  process.stderr.write(`test database: embedded PostgreSQL on port ${port}\n`);
  const db = await startEmbeddedPostgres({ dataDir, port, password, database: TEMPLATE_DB, persistent: false });
  let code = 1;
  try {
    await migrate(db.ownerUrl, APP_PASSWORD);
    const admin = new Client({ connectionString: db.ownerUrl.replace(/\/[^/]+$/, '/postgres') });
    await admin.connect();
    await admin.query(`ALTER DATABASE ${TEMPLATE_DB} WITH IS_TEMPLATE true`);
    await admin.end();

    const files = testFiles(join(root, 'dist', 'test'), process.argv.slice(2));
    const tap = join(dataDir, 'results.tap');
    code = await new Promise<number>((res) => {
      const child = spawn(
        process.execPath,
        [
          '--test',
          '--test-concurrency=2',
          '--test-reporter=spec',
          '--test-reporter-destination=stdout',
          '--test-reporter=tap',
          `--test-reporter-destination=${tap}`,
          ...files,
        ],
        {
          stdio: 'inherit',
          env: { ...process.env, TEST_PG_URL: db.ownerUrl.replace(/\/[^/]+$/, ''), TEST_ROOT: root },
        },
      );
      child.on('exit', (c) => res(c ?? 1));
    });
    const text = readFileSync(tap, 'utf8');
    const count = (k: string) => Number(new RegExp(`^# ${k} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
    const skipped = count('skipped');
    process.stdout.write(`${count('pass')} passed, ${count('fail')} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
  } finally {
    await db.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
  return code;
}

main().then(
  (c) => process.exit(c),
  (e: unknown) => {
    process.stderr.write(`test run failed: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
