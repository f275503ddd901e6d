import 'reflect-metadata';
import { createApp } from './app';
import { ConfigError, loadEnv } from './config/config';
import { resolveRuntime } from './runtime/runtime';

async function main(): Promise<void> {
  const env = loadEnv(process.env);
  const say = (msg: string) => process.stderr.write(`agent-ledger: ${msg}\n`);
  const runtime = await resolveRuntime(env, say);
  if (runtime.migrationsApplied.length) say(`applied migrations: ${runtime.migrationsApplied.join(', ')}`);
  const app = await createApp(runtime.config);
  app.enableShutdownHooks();
  await app.listen({ port: env.PORT, host: env.HOST });
  say(`listening on http://${env.HOST}:${env.PORT} (API docs at /docs)`);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    say(`${signal}: shutting down`);
    await app.close();
    await runtime.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

main().catch((err: unknown) => {
  process.stderr.write(`agent-ledger: ${err instanceof ConfigError ? err.message : String((err as Error)?.stack ?? err)}\n`);
  process.exit(1);
});
