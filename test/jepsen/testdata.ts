/**
 * Where the external reference data lives: `../shared/testdata` next to the repository, or the folder
 * RFS_SHARED_TESTDATA names (for a clone elsewhere).
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const sharedTestdata =
  process.env['RFS_SHARED_TESTDATA'] !== undefined ? process.env['RFS_SHARED_TESTDATA'] : fileURLToPath(new URL('../../../shared/testdata', import.meta.url));

/** Knossos' own cas-register histories (good/ are linearizable, bad/ are not). */
export const knossosHistories = join(sharedTestdata, 'knossos-cas-register');
