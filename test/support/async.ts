export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every `pollMs` until it holds; fails after `timeoutMs`, saying what it waited for. */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  what: string | (() => string),
  timeoutMs = 15_000,
  pollMs = 25,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await cond())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for: ${typeof what === 'string' ? what : what()}`);
    await sleep(pollMs);
  }
}

/** A promise whose settlement the test can look at without awaiting it. */
export function watch<T>(p: Promise<T>): { promise: Promise<T>; readonly done: boolean } {
  let done = false;
  const promise = p.finally(() => (done = true));
  promise.catch(() => undefined);
  return {
    promise,
    get done() {
      return done;
    },
  };
}
