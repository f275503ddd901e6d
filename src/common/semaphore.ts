/**
 * At most `limit` holders at a time; the others wait in arrival order. (A
 * dozen lines: a dependency such as p-limit would bring an ES module for this.)
 */
export class Semaphore {
  private held = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly limit: number) {
    if (!(limit >= 1)) throw new RangeError('a semaphore needs a limit of at least 1');
  }

  /** Runs `fn` holding one of the slots. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.held < this.limit) this.held++;
    else await new Promise<void>((r) => this.waiting.push(r)); // the releasing holder hands its slot over
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.held--;
    }
  }
}
