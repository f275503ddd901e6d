import { parentPort } from 'node:worker_threads';
import { prepareBatchBody, type PreparedBody } from './prepare-body';

/** A job of IngestWorkers: a raw request body. */
export interface PrepareJob {
  id: number;
  body: Uint8Array;
}

/** Its answer: the prepared batch, or undefined to let the main thread take the ordinary path. */
export interface PrepareAnswer {
  id: number;
  result: PreparedBody | undefined;
}

// One ingest worker (see IngestWorkers): prepares the bodies it is sent, one at a time, and answers each.
parentPort?.on('message', (job: PrepareJob) => {
  let result: PreparedBody | undefined;
  try {
    result = prepareBatchBody(job.body);
  } catch {
    result = undefined;
  }
  parentPort!.postMessage({ id: job.id, result } satisfies PrepareAnswer);
});
