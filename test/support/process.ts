import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { exportJWK, generateKeyPair } from 'jose';
import { createApp } from '../../src/app';
import type { AppConfig } from '../../src/runtime/runtime';
import { TEST_JWT_SECRET } from './app';
import type { TestDatabase } from './db';
import { freePort } from './net';
export { freePort };

/**
 * More than one service on one test database: a second in-process app built
 * by `createApp` (what `main.ts` uses), and the real service as a child
 * process (`node dist/src/main.js`) that a test can SIGKILL and restart.
 */


/** A private Ed25519 JWK as JSON, the form LEDGER_SIGNING_KEY takes. */
export async function ledgerSigningKeyJson(): Promise<string> {
  const { privateKey } = await generateKeyPair('Ed25519', { extractable: true });
  return JSON.stringify(await exportJWK(privateKey));
}

export interface ExtraApp {
  app: NestFastifyApplication;
  url: string;
  close(): Promise<void>;
}

/**
 * Another instance of the app on an existing test database, as a second
 * service process would run: its own connection pool, sequencer and Merkle
 * frontier cache. Pass the first app's config so both share the ledger key.
 */
export async function startAppOn(db: TestDatabase, config: AppConfig): Promise<ExtraApp> {
  const app = await createApp({ ...config, databaseUrl: db.appUrl });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  return { app, url, close: () => app.close() };
}

export interface ServiceProcess {
  child: ChildProcess;
  url: string;
  port: number;
  /** What the process wrote to stderr so far (for failure messages). */
  output(): string;
  /** Resolves when the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends the signal and waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const live = new Set<ChildProcess>();

process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/** SIGKILLs every service process still running; call it in `after`. */
export async function killAllServiceProcesses(): Promise<void> {
  await Promise.all(
    [...live].map(
      (c) =>
        new Promise<void>((res) => {
          if (c.exitCode !== null || c.signalCode !== null) return res();
          c.once('exit', () => res());
          c.kill('SIGKILL');
        }),
    ),
  );
  live.clear();
}

export interface ServiceOptions {
  /** LEDGER_SIGNING_KEY: keep it across restarts of one ledger. */
  signingKey: string;
  port?: number;
  env?: Record<string, string>;
  readyTimeoutMs?: number;
}

/**
 * Starts `node dist/src/main.js` on the test database (runtime role for
 * DATABASE_URL, the owner for migrations) and waits for /health/ready.
 */
export async function startServiceProcess(db: TestDatabase, opts: ServiceOptions): Promise<ServiceProcess> {
  const port = opts.port ?? (await freePort());
  const main = resolve(__dirname, '..', '..', 'src', 'main.js');
  const dataDir = mkdtempSync(join(tmpdir(), 'agent-ledger-proc-'));
  const child = spawn(process.execPath, [main], {
    env: {
      PATH: process.env.PATH ?? '',
      NODE_ENV: 'test',
      LOG_LEVEL: 'silent',
      HOST: '127.0.0.1',
      PORT: String(port),
      DATABASE_URL: db.appUrl,
      MIGRATIONS_DATABASE_URL: db.ownerUrl,
      AUTH_JWT_SECRET: TEST_JWT_SECRET,
      LEDGER_SIGNING_KEY: opts.signingKey,
      DATA_DIR: dataDir,
      ...opts.env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  live.add(child);
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => {
    stderr = (stderr + d).slice(-20_000);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => {
    child.once('exit', (code, signal) => {
      live.delete(child);
      rmSync(dataDir, { recursive: true, force: true });
      res({ code, signal });
    });
  });
  const url = `http://127.0.0.1:${port}`;
  const proc: ServiceProcess = {
    child,
    url,
    port,
    output: () => stderr,
    exited,
    kill: async (signal = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };

  const deadline = Date.now() + (opts.readyTimeoutMs ?? 30_000);
  let gone = false;
  void exited.then(() => (gone = true));
  for (;;) {
    if (gone) throw new Error(`the service exited before it was ready:\n${stderr}`);
    try {
      // Only once this child says it listens: the free port may have been taken in the meantime by
      // another test file's server, which would answer /health/ready for a database not ours.
      if (!stderr.includes(`listening on ${url} `)) throw new Error('not listening yet');
      const res = await fetch(`${url}/health/ready`);
      if (res.status === 200) return proc;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await proc.kill();
      throw new Error(`the service was not ready within ${opts.readyTimeoutMs ?? 30_000} ms:\n${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
