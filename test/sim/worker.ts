/** A worker thread of runBatch: runs its share of seeds and posts one summary per seed. */
import { parentPort, workerData } from 'node:worker_threads';
import { summarizeSeed, type WorkerReply, type WorkerRequest } from './batch.ts';

async function main(): Promise<void> {
  const port = parentPort;
  if (port === null) throw new Error('worker.ts must run in a worker thread');
  const request = workerData as WorkerRequest;
  for (const seed of request.seeds) {
    const reply: WorkerReply = { type: 'result', summary: await summarizeSeed(seed, request) };
    port.postMessage(reply);
  }
  const done: WorkerReply = { type: 'done' };
  port.postMessage(done);
}

await main();
