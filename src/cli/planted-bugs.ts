/**
 * Planted bugs in real server processes, for the Jepsen suite's self-test only (docs/JEPSEN.md, "Planted
 * bugs"): each one breaks a guarantee on purpose, so that the suite can show its checkers catch it.
 *
 *   RFS_PLANTED_BUGS=read-without-quorum[,name…]  RFS_ALLOW_PLANTED_BUGS=yes-i-want-a-broken-cluster
 *
 * Both variables are needed: a bug list without the exact consent value is a startup error, so a stray
 * variable cannot break a real cluster silently. An unknown name is a startup error too. Not a setting of
 * config.ts (no flag, no config file key): deliberately out of the way of operators.
 *
 * Every process of a test cluster gets the same list; each takes the bugs that live in it (the Raft core's
 * in a metadata server, the data path's in a chunkserver) and ignores the others. The simulator-only bugs
 * of the state machine and the chunk manager are refused (no checker of the suite is built for them).
 */
import type { PlantedBug } from '../raft/config.ts';
import { plantedBugs } from '../raft/config.ts';
import type { DataBug } from '../chunkserver/bugs.ts';
import { dataBugs } from '../chunkserver/bugs.ts';

export const plantedBugsEnv = 'RFS_PLANTED_BUGS';
export const allowPlantedBugsEnv = 'RFS_ALLOW_PLANTED_BUGS';
/** The exact value `allowPlantedBugsEnv` must hold. */
export const allowPlantedBugsValue = 'yes-i-want-a-broken-cluster';
/** Names in one list, at most (there are fewer bugs than this). */
export const plantedBugNamesMax = 16;

/** Every planted bug a real process honours. */
export const processBugNames: readonly string[] = [...plantedBugs, ...dataBugs];

export class PlantedBugsError extends Error {
  constructor(
    readonly code: 'EPLANTED_NOT_ALLOWED' | 'EPLANTED_UNKNOWN' | 'EPLANTED_TOO_MANY',
    message: string,
  ) {
    super(message);
    this.name = 'PlantedBugsError';
  }
}

export interface ProcessBugs {
  /** Every name switched on, in the order given (logged). */
  readonly names: readonly string[];
  /** The Raft core's (metadata servers). */
  readonly raft: ReadonlySet<PlantedBug>;
  /** The data path's (chunkservers: replica store and data server). */
  readonly data: ReadonlySet<DataBug>;
}

export const noProcessBugs: ProcessBugs = { names: [], raft: new Set(), data: new Set() };

const isRaftBug = (name: string): name is PlantedBug => (plantedBugs as readonly string[]).includes(name);
const isDataBug = (name: string): name is DataBug => (dataBugs as readonly string[]).includes(name);

/** Reads the planted bugs of this process from the environment; throws PlantedBugsError on anything doubtful. */
export function plantedBugsFromEnv(env: Readonly<Record<string, string | undefined>> = process.env): ProcessBugs {
  const list = (env[plantedBugsEnv] ?? '').trim();
  if (list === '') return noProcessBugs;
  if (env[allowPlantedBugsEnv] !== allowPlantedBugsValue) {
    throw new PlantedBugsError(
      'EPLANTED_NOT_ALLOWED',
      `${plantedBugsEnv} is set (${JSON.stringify(list)}) but ${allowPlantedBugsEnv} is not '${allowPlantedBugsValue}': refusing to start a deliberately broken server`,
    );
  }
  const names = [...new Set(list.split(',').map((n) => n.trim()))];
  if (names.length > plantedBugNamesMax) throw new PlantedBugsError('EPLANTED_TOO_MANY', `${plantedBugsEnv}: more than ${plantedBugNamesMax} names`);
  const raft = new Set<PlantedBug>();
  const data = new Set<DataBug>();
  for (const name of names) {
    if (isRaftBug(name)) raft.add(name);
    else if (isDataBug(name)) data.add(name);
    else throw new PlantedBugsError('EPLANTED_UNKNOWN', `${plantedBugsEnv}: unknown planted bug ${JSON.stringify(name)}; known: ${processBugNames.join(', ')}`);
  }
  return { names, raft, data };
}

/** The environment that switches `names` on in a child process (the Jepsen harness). */
export function plantedBugsEnvFor(names: readonly string[]): Record<string, string> {
  if (names.length === 0) return {};
  return { [plantedBugsEnv]: names.join(','), [allowPlantedBugsEnv]: allowPlantedBugsValue };
}

/** The warning a server logs (at `warn`, and on stderr) when it starts with a bug on. */
export function plantedBugsWarning(bugs: ProcessBugs): string {
  return `PLANTED BUGS ON (${bugs.names.join(', ')}): this server breaks its guarantees on purpose; for the Jepsen self-test only, never for data you care about`;
}
