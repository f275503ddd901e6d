import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { loadPolicySet, PolicyLoadError, type PolicySet, type PolicySource } from '../core/policy';
import type { AppConfig } from '../runtime/runtime';
import { APP_CONFIG } from '../runtime/tokens';
import { PolicyError } from './policy.errors';

/** The set in force, with what identifies it. */
export interface LoadedPolicySet {
  set: PolicySet;
  /** Lowercase hex SHA-256 of JCS([{file, sha256}]) over the file texts as read: changes with any byte. */
  contentDigest: string;
  loadedAt: Date;
}

const POLICY_FILE = /\.ya?ml$/i;

async function readSources(dir: string): Promise<PolicySource[]> {
  let names: string[];
  try {
    names = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isFile() && POLICY_FILE.test(e.name)).map((e) => e.name);
  } catch (err) {
    throw new PolicyLoadError([{ file: dir, message: `cannot read the policy folder: ${(err as Error).message}` }]);
  }
  names.sort();
  return Promise.all(names.map(async (name) => ({ file: join(dir, name), text: await readFile(join(dir, name), 'utf8') })));
}

export function contentDigest(sources: readonly PolicySource[]): string {
  const h = createHash('sha256');
  for (const s of sources) {
    h.update(`${s.file}\n${createHash('sha256').update(s.text, 'utf8').digest('hex')}\n`);
  }
  return h.digest('hex');
}

/**
 * Loads `POLICIES_DIR/*.yaml` all or nothing. A refused set leaves the one in
 * force untouched; listeners hear of every new set (the evaluator restarts
 * its engines and records `policy.set_loaded` per tenant).
 */
@Injectable()
export class PolicySetStore {
  private readonly logger = new Logger('PolicySetStore');
  private loaded: LoadedPolicySet | undefined;
  private readonly listeners: ((set: LoadedPolicySet) => void)[] = [];

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

  get current(): LoadedPolicySet | undefined {
    return this.loaded;
  }

  get dir(): string {
    return this.config.env.POLICIES_DIR;
  }

  onLoaded(listener: (set: LoadedPolicySet) => void): void {
    this.listeners.push(listener);
  }

  /** Reads and compiles the folder; throws PolicyError.refused with every problem. */
  async reload(): Promise<{ loaded: LoadedPolicySet; changed: boolean }> {
    let sources: PolicySource[];
    let set: PolicySet;
    try {
      sources = await readSources(this.dir);
      set = loadPolicySet(sources);
    } catch (err) {
      if (err instanceof PolicyLoadError) {
        this.logger.warn(`policy set refused, ${this.loaded ? `${this.loaded.set.hash} stays in force` : 'none in force'}: ${err.message}`);
        throw PolicyError.refused(err.problems, this.loaded?.set.hash ?? null);
      }
      throw err;
    }
    const digest = contentDigest(sources);
    if (this.loaded && this.loaded.set.hash === set.hash && this.loaded.contentDigest === digest) {
      return { loaded: this.loaded, changed: false };
    }
    const changed = this.loaded?.set.hash !== set.hash;
    this.loaded = { set, contentDigest: digest, loadedAt: new Date() };
    this.logger.log(`policy set ${set.hash} loaded: ${set.rules.length} rules from ${set.files.length} files`);
    for (const l of this.listeners) l(this.loaded);
    return { loaded: this.loaded, changed };
  }
}
