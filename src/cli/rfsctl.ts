/**
 * `rfsctl`, the operator CLI of rfs (see docs/RFSCTL.md, or `rfsctl --help`). Run it as `npx rfsctl …`
 * (bin/rfsctl.js loads this file through tsx) or `node --import tsx src/cli/rfsctl.ts …`.
 */
import { runRfsctl } from './rfsctl/main.ts';

// The reader of stdout went away (`rfsctl cat /f | head`): stop quietly, as cat does.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(0);
  throw error;
});

const code = await runRfsctl(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin });
// Exit once stdout and stderr are flushed: gRPC channels and sockets must not keep the process alive.
await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
await new Promise<void>((resolve) => process.stderr.write('', () => resolve()));
process.exit(code);
