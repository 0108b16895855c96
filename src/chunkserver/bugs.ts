/**
 * Planted bugs of the chunkserver's data path, for the simulator's self-test only (test/sim, `--workload
 * data --bug NAME`): each switch breaks one rule so that the simulator can show its data checks catch the
 * breakage. Production code never sets them (the options that carry them default to none).
 */
export const dataBugs = [
  /** A pipeline hop acknowledges a packet once its own append is done, without waiting for its downstream. */
  'data-ack-before-last-replica',
  /** The replica store's read returns the stored bytes without verifying their block checksums. */
  'data-skip-read-checksum',
  /** The replica store serves a read at any version it holds: a stale replica answers for a newer version. */
  'data-reuse-stale-replica',
  /**
   * The client's read session (src/client/read-session.ts) keeps its read-ahead after a jump and copies out
   * of it without checking that the piece starts where the read does. A client-side bug: only readers given
   * it (the simulator's, through FileReaderOptions.bugs) have it; a chunkserver process ignores it.
   */
  'data-read-ahead-unchecked',
  /**
   * The chain's last replica does not check the writer's per-packet CRC32Cs against the bytes that reached
   * it (dataplane/server.ts), so a packet corrupted on the wire to any hop is stored (with the writer's CRCs)
   * by that hop and every hop after it, and acknowledged.
   */
  'data-skip-packet-crc',
] as const;
export type DataBug = (typeof dataBugs)[number];

export const noDataBugs: ReadonlySet<DataBug> = new Set();
